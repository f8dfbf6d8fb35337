# Runs shell code inside the sandbox (see the executor's lang module, and runner.py, which speaks
# the same protocol). Started ahead of time, it waits for one request line on descriptor 6:
#   run           exec bash /sandbox/main.sh: a fresh shell, nothing of this one remains
#   context CWD   become a shell context: change to CWD and answer "done" for cell 0; each
#                 following line `cell N` sources /sandbox/cell.sh in this shell, so the working
#                 directory, variables and functions persist, and answers "done" with the exit
#                 code of the cell's last command. `exit` ends the shell, and so the context.
# SIGINT (an interrupt) ends the foreground command, and the cell (or the innermost function
# running) with 130; the shell survives. Unlike the other runners, a shell cannot keep its
# descriptors from the commands it runs: they belong to the user's own context anyway.
IFS= read -r -u 6 __sandbox_request || exit 0
__sandbox_dir=${BASH_SOURCE%/*}
case $__sandbox_request in
context\ *) ;;
*)
  exec 3>&- 6<&-
  exec bash "$__sandbox_dir/main.sh"
  ;;
esac

__sandbox_done() {
  printf '{"type":"done","seq":%d,"exit_code":%d,"error":null}\n' "$1" "$2" >&3
}
__sandbox_cell() {
  source "$__sandbox_dir/cell.sh"
}

if ! cd -- "${__sandbox_request#context }"; then
  printf '{"type":"done","seq":0,"exit_code":1,"error":{"name":"cd","value":"%s","traceback":""}}\n' \
    "cannot change to the context's directory" >&3
  exit 1
fi
__sandbox_running=
trap '[ -n "$__sandbox_running" ] && return 130' INT
__sandbox_done 0 0
while :; do
  IFS= read -r -u 6 __sandbox_request
  __sandbox_status=$?
  # A signal that came between cells interrupts the wait, nothing else.
  [ "$__sandbox_status" -gt 128 ] && continue
  [ "$__sandbox_status" -eq 0 ] || exit 0
  case $__sandbox_request in
  cell\ *) ;;
  *) continue ;;
  esac
  __sandbox_running=1
  __sandbox_cell
  __sandbox_status=$?
  __sandbox_running=
  __sandbox_done "${__sandbox_request#cell }" "$__sandbox_status"
done
