//! The proxy end to end, on 127.0.0.1 and Unix sockets only: names reach loopback test servers
//! through a static name table, and the connector refuses any address outside 127.0.0.0/8
//! without opening a socket, so no test sends a packet anywhere else, not even one that expects
//! a denial.

mod connect;
mod curl;
mod forward;
mod limits;
mod sessions;
mod shared;
mod support;
