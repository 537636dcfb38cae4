#!/usr/bin/env python3
"""Checks that the documentation says what the programs do (test_docs.sh).

  doccheck.py verbs HELP MANPAGE     the verbs of `resolverctl --help` are
                                     the .TP entries of VERBS in MANPAGE
  doccheck.py options HELP MANPAGE   every -x/--long option in HELP is an
                                     entry of OPTIONS in MANPAGE, and back
  doccheck.py header MANPAGE VERSION .TH carries VERSION and a date
  doccheck.py api HEADER MANPAGE     every RESOLVER_API function of HEADER
                                     is in the SYNOPSIS of MANPAGE
  doccheck.py status JSON PROTOCOL   every key of a STATUS reply (nested
                                     ones as a.b) is a row of the STATUS
                                     fields table of doc/protocol.md
  doccheck.py limits PROTO_H PROTOCOL  the line and token limits of
                                     src/wire.h  are the ones stated
  doccheck.py config README EFFECTIVE  the defaults block of the README's
                                     Configuration is what --check-config
                                     prints for {}, and every other key is
                                     named in that section

Each prints what differs and exits 1 on a difference.
"""
import json
import re
import sys


def roff_text(line):
    """A roff line as plain text: macro name, fonts and escapes dropped."""
    if line.startswith('.'):
        line = line.split(None, 1)[1] if ' ' in line else ''
    line = re.sub(r'\\f[BIRP]|\\f\(..', '', line)
    line = line.replace('\\-', '-').replace('\\|', '').replace('\\&', '').replace('"', '')
    return line


def sections(path):
    """{section name: [lines]} of a man page (.SH names)."""
    out, cur = {}, None
    for line in open(path, encoding='utf-8'):
        line = line.rstrip('\n')
        if line.startswith('.SH '):
            cur = line[4:].strip().strip('"')
            out[cur] = []
        elif cur:
            out[cur].append(line)
    return out


def tp_headers(lines):
    """The plain text of the line after each .TP."""
    return [roff_text(lines[i + 1]) for i, l in enumerate(lines[:-1]) if l.startswith('.TP')]


OPTION = re.compile(r'(?<![\w-])(--[a-z][a-z-]*|-[A-Za-z])(?![\w-])')


def report(what, only_a, only_b, a='--help', b='the man page'):
    for name in sorted(only_a):
        print(f'{what} {name}: in {a}, not in {b}')
    for name in sorted(only_b):
        print(f'{what} {name}: in {b}, not in {a}')
    return 1 if only_a or only_b else 0


def cmd_verbs(help_path, man_path):
    text = open(help_path, encoding='utf-8').read()
    block = text.split('Verbs:\n', 1)[1].split('\n\n', 1)[0]
    helped = {m.group(1) for m in re.finditer(r'^  ([a-z][a-z-]*)', block, re.M)}
    manned = {h.split()[0] for h in tp_headers(sections(man_path)['VERBS']) if h.split()}
    return report('verb', helped - manned, manned - helped)


def cmd_options(help_path, man_path):
    helped = set(OPTION.findall(open(help_path, encoding='utf-8').read()))
    manned = set()
    for h in tp_headers(sections(man_path)['OPTIONS']):
        manned |= set(OPTION.findall(h))
    return report('option', helped - manned, manned - helped)


def cmd_header(man_path, version):
    th = [l for l in open(man_path, encoding='utf-8') if l.startswith('.TH ')]
    if not th:
        print(f'{man_path}: no .TH line')
        return 1
    fields = re.findall(r'"[^"]*"|\S+', th[0])
    date = fields[3] if len(fields) > 3 else ''
    source = fields[4].strip('"') if len(fields) > 4 else ''
    rc = 0
    if not re.fullmatch(r'\d{4}-\d\d-\d\d', date):
        print(f'{man_path}: .TH date is {date!r}, not YYYY-MM-DD')
        rc = 1
    if source != f'libresolver {version}':
        print(f'{man_path}: .TH says {source!r}, the program is version {version}')
        rc = 1
    return rc


def api_functions(header_path):
    text = open(header_path, encoding='utf-8').read()
    return re.findall(r'^RESOLVER_API[^(]*?[ *](resolver_[a-z0-9_]*)\(', text, re.M)


def cmd_api(header_path, man_path):
    synopsis = '\n'.join(roff_text(l) for l in sections(man_path)['SYNOPSIS'])
    missing = [f for f in api_functions(header_path) if not re.search(rf'\b{f}\(', synopsis)]
    for f in missing:
        print(f'{f}: exported by the header, not in the SYNOPSIS of {man_path}')
    return 1 if missing else 0


def keys(doc, prefix=''):
    for k, v in doc.items():
        yield prefix + k
        if isinstance(v, dict):
            yield from keys(v, prefix + k + '.')


def protocol_section(path, title):
    text = open(path, encoding='utf-8').read()
    m = re.search(rf'^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)', text, re.M | re.S)
    return m.group(1) if m else ''


def cmd_status(json_path, protocol_path):
    doc = json.load(open(json_path, encoding='utf-8'))
    table = protocol_section(protocol_path, 'STATUS fields')
    rows = set(re.findall(r'^\| `([a-z0-9_.]+)` \|', table, re.M))
    if not rows:
        print(f'{protocol_path}: no "STATUS fields" table')
        return 1
    got = set(keys(doc))
    return report('STATUS field', got - rows, rows - got, 'the reply', 'protocol.md')


def cmd_limits(proto_h, protocol_path):
    h = open(proto_h, encoding='utf-8').read()
    line_max = re.search(r'#define RSV_PROTO_LINE_MAX (\d+)', h).group(1)
    args_max = re.search(r'#define RSV_PROTO_MAX_ARGS (\d+)', h).group(1)
    limits = protocol_section(protocol_path, 'Limits')
    rc = 0
    if not re.search(rf'^\| request line \| {line_max} bytes', limits, re.M):
        print(f'Limits: the request line is {line_max} bytes in src/wire.h')
        rc = 1
    m = re.search(r'^\| tokens per request, the verb included \| (\d+) \(at most (\d+) arguments\)',
                  limits, re.M)
    if not m or m.group(1) != args_max or int(m.group(2)) != int(args_max) - 1:
        print(f'Limits: a request is at most {args_max} tokens in src/wire.h, the verb included')
        rc = 1
    return rc


def leaves(doc, prefix=''):
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, prefix + k + '.')
        else:
            yield prefix + k, v


def cmd_config(readme_path, effective_path):
    section = protocol_section(readme_path, 'Configuration')
    block = re.search(r'```json\n(.*?)```', section, re.S)
    if not block:
        print(f'{readme_path}: no JSON block under Configuration')
        return 1
    shown = dict(leaves(json.loads(block.group(1))))
    actual = dict(leaves(json.load(open(effective_path, encoding='utf-8'))))
    rc = 0
    for key, value in sorted(shown.items()):
        if key == 'services':
            continue
        if key not in actual:
            print(f'README shows {key}, which the configuration does not have')
            rc = 1
        elif actual[key] != value:
            print(f'README shows {key} = {value!r}, the default is {actual[key]!r}')
            rc = 1
    for key in sorted(set(actual) - set(shown)):
        if f'`"{key.split(".")[-1]}"' not in section and f'`{key}`' not in section:
            print(f'{key}: a configuration key the README does not name')
            rc = 1
    return rc


COMMANDS = {'verbs': cmd_verbs, 'options': cmd_options, 'header': cmd_header, 'api': cmd_api,
            'status': cmd_status, 'limits': cmd_limits,
            'config': cmd_config}

if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2], sys.argv[3]))
