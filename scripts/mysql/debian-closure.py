#!/usr/bin/env python3
"""Prints the .deb files a set of Debian packages needs, with their dependencies.

    debian-closure.py PACKAGES_INDEX PACKAGE...

PACKAGES_INDEX is a Debian `Packages` file (uncompressed). The output has one line per
package: its pool path and its SHA-256, for `scripts/brokers install mysql`, which unpacks
them into a private folder. The closure follows Pre-Depends and Depends (the first choice of
each alternative, a virtual package through the first package that provides it) and leaves out
what a private unpacked copy does not use: maintainer-script tools (perl, debconf, dpkg,
adduser, passwd, init systems) and packages of configuration only.
"""
import re
import sys

NOT_NEEDED = {
    "adduser", "base-files", "coreutils", "debconf", "debconf-2.0", "debianutils", "dpkg",
    "init-system-helpers", "libc-bin", "libsystemd0", "libudev1", "mysql-common", "passwd",
    "perl", "perl-base", "sensible-utils", "tzdata",
}


def read_index(path):
    packages, current = {}, {}
    with open(path, encoding="utf-8", errors="replace") as index:
        for line in index:
            line = line.rstrip("\n")
            if not line:
                if current:
                    packages.setdefault(current["Package"], current)
                current = {}
            elif not line[0].isspace():
                key, _, value = line.partition(": ")
                current[key] = value
    if current:
        packages.setdefault(current["Package"], current)
    return packages


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    packages = read_index(sys.argv[1])
    provided_by = {}
    for name, fields in packages.items():
        for provided in fields.get("Provides", "").split(","):
            provided = provided.strip().split(" ")[0]
            if provided:
                provided_by.setdefault(provided, name)
    wanted, queue = [], list(sys.argv[2:])
    while queue:
        name = queue.pop(0).split(":")[0]
        if name in NOT_NEEDED or name.startswith("gcc-") and name.endswith("-base"):
            continue
        name = name if name in packages else provided_by.get(name, name)
        if name in wanted:
            continue
        if name not in packages:
            sys.exit(f"package {name} is not in {sys.argv[1]}")
        wanted.append(name)
        for field in ("Pre-Depends", "Depends"):
            for dependency in packages[name].get(field, "").split(","):
                first_choice = dependency.split("|")[0].strip()
                if first_choice:
                    queue.append(re.split(r"[ (]", first_choice)[0])
    for name in wanted:
        print(packages[name]["Filename"], packages[name]["SHA256"])


if __name__ == "__main__":
    main()
