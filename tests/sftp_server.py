"""An SFTP server on 127.0.0.1 (asyncssh's), serving one directory as its root to the user
``ana`` with password ``pw``: the peer of the sftp:// artifact tests.

Run as ``python sftp_server.py ROOT PORT HOST_KEY``; prints ``ready`` once it listens."""

import asyncio
import sys

import asyncssh


class _PasswordOnly(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return (username, password) == ("ana", "pw")


async def _serve(root, port, host_key):
    def rooted(channel):
        return asyncssh.SFTPServer(channel, chroot=root)

    await asyncssh.listen(
        "127.0.0.1",
        port,
        server_factory=_PasswordOnly,
        server_host_keys=[host_key],
        sftp_factory=rooted,
    )
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
