"""Authentication: the password file and its checker, ``hbchat-passwd``, the ``--auth`` option,
and the bound on login work (password checks at once, failed logins per address).

Nothing is re-exported here: import from the module itself (``hbchat.auth.passwords``, ...).
"""
