"""The `mlbuild` console script and the resident server behind it.

A command is run by a process forked from a server that has imported mlbuild already, as
Gradle's and Bazel's clients hand theirs to a daemon, instead of paying the interpreter's and
the imports' start-up every time (about 0.15 s of a no-op `mlbuild run`). The client
(`client.py`, the standard library's C modules only) passes its argv, working directory,
environment, umask and standard streams over a Unix socket, forwards signals and exits as the
command did; without a usable server it runs the command itself and starts one for the next
command. `server.py` imports, forks and watches.

May import: cli and everything below it.
"""
