"""A small INI reader for comparing config listings line by line.

configparser folds [DEFAULT] into every section and rejects repeated sections; the
reference chapter repeats [libvirt] in nova.conf, and the comparison wants the file's
own sections, so this reader keeps each section's own keys and can either merge or
reject repeats.
"""


class DuplicateSection(ValueError):
    pass


def parse_ini(text: str, *, merge_duplicates: bool) -> dict[str, dict[str, str | None]]:
    sections: dict[str, dict[str, str | None]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            if name in sections and not merge_duplicates:
                raise DuplicateSection(name)
            current = sections.setdefault(name, {})
            continue
        if current is None:
            raise ValueError(f"option outside a section: {line!r}")
        if "=" in line:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
        else:
            current[line] = None
    return sections
