"""Packaging for mirrord / fs_mirror / fs_info.

Berkeley DB: the user chose bsddb3; its last release does not build on
Python 3.12+, where the same API ships as ``berkeleydb``.  pyinotify imports
``asyncore``, which left the standard library in 3.12 (``pyasyncore``).
"""

from setuptools import setup

setup(
    name="mirrord",
    version="0.1.0",
    description="Near-realtime file-system mirroring: inotify worker daemon and backup-host client",
    python_requires=">=3.11",
    packages=["protocol", "cmdconfig", "fs_info", "mirrord", "fs_mirror", "fs_sync"],
    install_requires=[
        "twisted>=23.8",
        "pyinotify>=0.9.6",
        'pyasyncore; python_version >= "3.12"',
        'bsddb3>=6.2.9; python_version < "3.12"',
        'berkeleydb>=18.1; python_version >= "3.12"',
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout",
            "hypothesis>=6",
            "pyftpdlib>=1.5",
            "ruff",
            "mypy",
        ],
        "tls": ["pyopenssl", "service_identity"],
    },
    entry_points={
        "console_scripts": [
            "mirrord = mirrord.main:main",
            "fs_mirror = fs_mirror.main:main",
            "fs_info = fs_info.cli:main",
        ],
    },
)
