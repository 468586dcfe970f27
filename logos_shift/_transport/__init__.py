"""The background data path: one worker thread, per-instance channels, sinks, spool.

The caller's thread only calls ``Channel.put``; encoding, the local copies,
uploads, the disk spool and replays run on the worker thread.  Everything
here is private.
"""
