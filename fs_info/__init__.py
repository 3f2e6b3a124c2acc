"""fs_info: name the parts of a file system mirrord watches ("identities").

``identity`` holds the include/exclude model and the streaming walk,
``store`` the list files on disk, ``cli`` the ``fs_info`` command.
"""
