"""The zygote's sys.path for apps: the standard library's entries, then the runtime's."""

import pytest

from skiff.instance.zygote import isolated_path

STDLIB = ["/py/lib/python3.11", "/py/lib/python3.11"]
RUNTIME = ["/srv/skiff/src"]


@pytest.mark.parametrize(("path", "expected"), [
    # a venv of the platform: its site-packages and what its .pth files added go
    (["/py/lib/python311.zip", "/py/lib/python3.11", "/py/lib/python3.11/lib-dynload",
      "/venv/lib/python3.11/site-packages", "/srv/skiff/src"],
     ["/py/lib/python311.zip", "/py/lib/python3.11", "/py/lib/python3.11/lib-dynload",
      "/srv/skiff/src"]),
    # a system install: site-packages inside the stdlib's directory goes too
    (["/py/lib/python3.11", "/py/lib/python3.11/site-packages", "/py/lib/python3.11/lib-dynload"],
     ["/py/lib/python3.11", "/py/lib/python3.11/lib-dynload", "/srv/skiff/src"]),
    # Debian's dist-packages and a user's directory outside the stdlib
    (["/py/lib/python3.11", "/usr/lib/python3/dist-packages", "/home/u/.local/lib", ""],
     ["/py/lib/python3.11", "/srv/skiff/src"]),
    # a look-alike prefix is not the stdlib
    (["/py/lib/python3.11-extra", "/py/lib/python3.11/"], ["/py/lib/python3.11/", "/srv/skiff/src"]),
])
def test_only_the_stdlib_and_the_runtime_stay(path, expected):
    """Site directories of any layout are dropped; the order of what stays is kept."""
    assert isolated_path(path, STDLIB, RUNTIME) == expected


def test_no_runtime_directory_leaves_the_stdlib_alone():
    """Without a runtime directory (a wheel install) the runtime is what is imported."""
    assert isolated_path(["/py/lib/python3.11", "/x/site-packages"], STDLIB, []) == [
        "/py/lib/python3.11"]
