// E2B's own JavaScript SDKs (npm `e2b`, `@e2b/code-interpreter`) against this server's
// E2B-compatible API, unchanged (scripts/e2b-tests.sh sets E2B_API_URL, E2B_SANDBOX_URL,
// E2B_API_KEY, E2B_DOMAIN and NODE_PATH). Run with `node --test`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Sandbox } from 'e2b'
import { Sandbox as CodeSandbox } from '@e2b/code-interpreter'

test('sandbox lifecycle', async () => {
  const owner = `t-${randomUUID().slice(0, 8)}`
  const sbx = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { owner } })
  assert.match(sbx.sandboxId, /^[a-z0-9]+$/)
  const info = await sbx.getInfo()
  assert.deepEqual(info.metadata, { owner })
  const listed = await Sandbox.list({ query: { metadata: { owner } } }).nextItems()
  assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])
  const again = await Sandbox.connect(sbx.sandboxId)
  await again.files.write('connected.txt', 'yes')
  assert.equal(await sbx.files.read('/home/user/connected.txt'), 'yes')
  await sbx.setTimeout(30_000)
  assert.equal(await sbx.isRunning(), true)
  assert.equal(await sbx.kill(), true)
  assert.equal(await Sandbox.kill(sbx.sandboxId), false)
})

test('files', async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 120_000 })
  try {
    await sbx.files.write('/home/user/d/a.txt', 'alpha')
    assert.equal(await sbx.files.read('d/a.txt'), 'alpha')
    assert.deepEqual((await sbx.files.list('/home/user/d')).map((e) => e.name), ['a.txt'])
    assert.equal(await sbx.files.exists('d/a.txt'), true)
    assert.equal(await sbx.files.exists('d/none'), false)
    assert.equal(await sbx.files.makeDir('nd'), true)
    assert.equal(await sbx.files.makeDir('nd'), false)
    await sbx.files.remove('d')
    assert.equal(await sbx.files.exists('d/a.txt'), false)
  } finally {
    await sbx.kill()
  }
})

test('code interpreter', async () => {
  const sbx = await CodeSandbox.create({ timeoutMs: 300_000 })
  try {
    await sbx.runCode('x = 41')
    assert.equal((await sbx.runCode('x + 1')).text, '42')
    const png = await sbx.runCode(
      "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.show()",
    )
    assert.ok(png.results.some((r) => r.png), JSON.stringify(png))
    const failed = await sbx.runCode('1 / 0')
    assert.equal(failed.error.name, 'ZeroDivisionError')
    assert.match(failed.error.traceback, /ZeroDivisionError/)
    const out = []
    await sbx.runCode("print('streamed')", { onStdout: (m) => out.push(m.line) })
    assert.equal(out.join(''), 'streamed\n', 'output comes in chunks as it is written')
  } finally {
    await sbx.kill()
  }
})

test('javascript context', async () => {
  const sbx = await CodeSandbox.create('multi-language', { timeoutMs: 300_000 })
  try {
    const ctx = await sbx.createCodeContext({ language: 'javascript' })
    await sbx.runCode('const greet = (n) => `hi ${n}`', { context: ctx })
    const ex = await sbx.runCode("console.log(greet('js'))", { context: ctx })
    assert.equal(ex.logs.stdout.join(''), 'hi js\n')
  } finally {
    await sbx.kill()
  }
})

test('commands', async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 300_000, envs: { FROM_SANDBOX: 's' } })
  try {
    const out = []
    const r = await sbx.commands.run('echo $FROM_SANDBOX $MINE; echo err >&2', {
      envs: { MINE: 'm' },
      onStdout: (d) => out.push(d),
    })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 's m\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal(out.join(''), 's m\n')
    await assert.rejects(sbx.commands.run('exit 4'), (e) => e.exitCode === 4)

    const cat = await sbx.commands.run('cat', { background: true, stdin: true })
    await sbx.commands.sendStdin(cat.pid, 'typed\n')
    assert.ok((await sbx.commands.list()).some((p) => p.pid === cat.pid))
    await sbx.commands.closeStdin(cat.pid)
    assert.equal((await cat.wait()).stdout, 'typed\n')

    const sleeper = await sbx.commands.run('sleep 600', { background: true })
    assert.equal(await sleeper.kill(), true)
    // The signal is sent, not waited for (as in envd): the process ends, then is gone.
    await assert.rejects(sleeper.wait(), (e) => e.exitCode === -1)
    assert.equal(await sbx.commands.kill(sleeper.pid), false)
  } finally {
    await sbx.kill()
  }
})

test('files: rename, depth and a streamed watch', async () => {
  const sbx = await Sandbox.create('base', { timeoutMs: 120_000 })
  try {
    await sbx.files.write('w/a/deep.txt', 'd')
    const paths = (await sbx.files.list('/home/user/w', { depth: 2 })).map((e) => e.path).sort()
    assert.deepEqual(paths, ['/home/user/w/a', '/home/user/w/a/deep.txt'])
    await sbx.files.rename('w/a/deep.txt', '/home/user/w/moved.txt')
    assert.equal(await sbx.files.read('w/moved.txt'), 'd')

    const seen = []
    const handle = await sbx.files.watchDir('/home/user/w', (ev) => seen.push(`${ev.type}:${ev.name}`), {
      recursive: true,
    })
    await sbx.commands.run('echo n > /workspace/w/new.txt; mkdir /workspace/w/sub; echo x > /workspace/w/sub/x.txt')
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline && !(seen.includes('create:new.txt') && seen.includes('create:sub/x.txt'))) {
      await new Promise((r) => setTimeout(r, 100))
    }
    await handle.stop()
    assert.ok(seen.includes('create:new.txt') && seen.includes('create:sub/x.txt'), seen.join(' '))
  } finally {
    await sbx.kill()
  }
})
