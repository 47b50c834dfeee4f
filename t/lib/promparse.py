#!/usr/bin/env python3
"""promparse.py - a strict reader of the Prometheus text format 0.0.4.

Used by t/integ/metrics.sh to check what rzkvd serves on /metrics:

  promparse.py check FILE          every line valid, exit 1 and say why if not
  promparse.py get FILE SERIES...  the value of each series, one a line
                                   ("name" or 'name{a="1",b="2"}', labels in
                                   any order; "absent" if there is none)
  promparse.py sum FILE NAME [LABEL=VALUE...]
                                   the sum of NAME over the series whose
                                   labels match

What "valid" means here (the format's rules, as Prometheus applies them):
  - a line is a comment ("# HELP name text", "# TYPE name type", any other
    "# ..."), a sample ("name{labels} value [timestamp]"), or empty;
  - metric and label names match the format's regular expressions, label
    values are quoted with only \\\\, \\" and \\n escaped, values are floats
    (or +Inf, -Inf, NaN);
  - HELP and TYPE at most once per family, TYPE before its samples, and
    the samples of a family together, not interleaved with another's;
  - no series twice; counters (and histogram buckets, sums, counts) are
    not negative, and a counter family's name ends in _total;
  - a histogram family has, for every label set, buckets with increasing
    "le" ending at "+Inf", cumulative counts that never decrease, and
    _sum and _count, _count equal to the +Inf bucket.
"""
import math
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
TYPES = {'counter', 'gauge', 'histogram', 'summary', 'untyped'}


class ParseError(Exception):
    pass


def parse_value(text, where):
    if text in ('+Inf', 'Inf'):
        return math.inf
    if text == '-Inf':
        return -math.inf
    if text == 'NaN':
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ParseError('%s: bad value %r' % (where, text)) from None


def parse_labels(s, i, where):
    """Labels from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == '}':
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ParseError('%s: bad label name at column %d'
                             % (where, i + 1))
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError('%s: expected =" after label %s' % (where, name))
        i += 2
        value = []
        while True:
            if i >= len(s):
                raise ParseError('%s: unterminated label value' % where)
            c = s[i]
            if c == '\\':
                nxt = s[i + 1:i + 2]
                if nxt not in ('\\', '"', 'n'):
                    raise ParseError('%s: bad escape \\%s' % (where, nxt))
                value.append('\n' if nxt == 'n' else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                raise ParseError('%s: newline in a label value' % where)
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise ParseError('%s: label %s twice' % (where, name))
        labels[name] = ''.join(value)
        if i < len(s) and s[i] == ',':
            i += 1
        elif i < len(s) and s[i] == '}':
            continue
        else:
            raise ParseError('%s: expected , or } after a label' % where)


def parse_sample(line, where):
    m = NAME.match(line)
    if not m:
        raise ParseError('%s: bad metric name' % where)
    name = m.group(0)
    i = m.end()
    labels = {}
    if i < len(line) and line[i] == '{':
        labels, i = parse_labels(line, i, where)
    rest = line[i:]
    if not rest.startswith(' '):
        raise ParseError('%s: expected a space before the value' % where)
    fields = rest.split()
    if len(fields) not in (1, 2):
        raise ParseError('%s: expected a value and an optional timestamp'
                         % where)
    value = parse_value(fields[0], where)
    if len(fields) == 2 and not re.fullmatch(r'-?[0-9]+', fields[1]):
        raise ParseError('%s: bad timestamp %r' % (where, fields[1]))
    return name, labels, value


def family_of(name, types):
    """The family a sample name belongs to (histogram suffixes stripped)."""
    for suffix in ('_bucket', '_sum', '_count'):
        if name.endswith(suffix):
            base = name[:-len(suffix)]
            if types.get(base) in ('histogram', 'summary'):
                return base
    return name


def series_key(name, labels):
    return (name, tuple(sorted(labels.items())))


def parse(text):
    """Parse and check; returns {(name, sorted labels): value}."""
    if text and not text.endswith('\n'):
        raise ParseError('the last line does not end with a newline')
    types, helps, samples = {}, {}, {}
    seen_families, current = set(), None
    for n, line in enumerate(text.split('\n')[:-1], 1):
        where = 'line %d' % n
        if line.strip() == '':
            continue
        if line.startswith('#'):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                fam = parts[2]
                if not NAME.fullmatch(fam):
                    raise ParseError('%s: bad metric name %r' % (where, fam))
                if parts[1] == 'HELP':
                    if fam in helps:
                        raise ParseError('%s: second HELP for %s'
                                         % (where, fam))
                    helps[fam] = parts[3] if len(parts) > 3 else ''
                else:
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ParseError('%s: bad TYPE line' % where)
                    if fam in types:
                        raise ParseError('%s: second TYPE for %s'
                                         % (where, fam))
                    if fam in seen_families:
                        raise ParseError('%s: TYPE for %s after its samples'
                                         % (where, fam))
                    types[fam] = parts[3]
                    if parts[3] == 'counter' and not fam.endswith('_total'):
                        raise ParseError('%s: counter %s does not end in '
                                         '_total' % (where, fam))
                if fam != current and fam in seen_families:
                    raise ParseError('%s: %s for %s, whose samples came '
                                     'earlier' % (where, parts[1], fam))
            continue
        name, labels, value = parse_sample(line, where)
        fam = family_of(name, types)
        if fam != current:
            if fam in seen_families:
                raise ParseError('%s: samples of %s are not together'
                                 % (where, fam))
            seen_families.add(fam)
            current = fam
        key = series_key(name, labels)
        if key in samples:
            raise ParseError('%s: series %s seen twice' % (where, line))
        if types.get(fam) in ('counter', 'histogram') and value < 0:
            raise ParseError('%s: negative %s' % (where, types[fam]))
        if types.get(fam) == 'histogram' and name == fam:
            raise ParseError('%s: histogram %s sample without _bucket, _sum '
                             'or _count' % (where, fam))
        samples[key] = value
    for fam, typ in types.items():
        if typ == 'histogram':
            check_histogram(fam, samples)
    return samples


def check_histogram(fam, samples):
    groups = {}
    for (name, labels), value in samples.items():
        if name != fam + '_bucket':
            continue
        d = dict(labels)
        if 'le' not in d:
            raise ParseError('%s_bucket without le' % fam)
        le = parse_value(d.pop('le'), fam)
        groups.setdefault(tuple(sorted(d.items())), []).append((le, value))
    for labels, buckets in groups.items():
        what = '%s%s' % (fam, dict(labels))
        bounds = [b[0] for b in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ParseError('%s: le bounds not increasing' % what)
        if bounds[-1] != math.inf:
            raise ParseError('%s: last bucket is not +Inf' % what)
        counts = [b[1] for b in buckets]
        if any(b > a for a, b in zip(counts[1:], counts)):
            raise ParseError('%s: buckets not cumulative' % what)
        total = samples.get((fam + '_count', labels))
        if total is None or (fam + '_sum', labels) not in samples:
            raise ParseError('%s: _sum or _count missing' % what)
        if total != counts[-1]:
            raise ParseError('%s: _count %g != +Inf bucket %g'
                             % (what, total, counts[-1]))
    for (name, labels) in samples:
        if name in (fam + '_sum', fam + '_count') and labels not in groups:
            raise ParseError('%s%s: _sum/_count without buckets'
                             % (fam, dict(labels)))


def parse_series(spec):
    """'name{a="1"}' -> key; raises ParseError."""
    name, labels, _ = parse_sample(spec + ' 0', 'series %r' % spec)
    return series_key(name, labels)


def fmt(v):
    return str(int(v)) if v == int(v) else repr(v)


def main(argv):
    if len(argv) < 3 or argv[1] not in ('check', 'get', 'sum'):
        sys.stderr.write(__doc__)
        return 2
    with open(argv[2], encoding='utf-8') as f:
        text = f.read()
    try:
        samples = parse(text)
        if argv[1] == 'check':
            print('ok: %d samples' % len(samples))
        elif argv[1] == 'get':
            for spec in argv[3:]:
                v = samples.get(parse_series(spec))
                print('absent' if v is None else fmt(v))
        else:
            want = dict(a.split('=', 1) for a in argv[4:])
            total = 0.0
            for (name, labels), v in samples.items():
                d = dict(labels)
                if name == argv[3] and all(d.get(k) == x
                                           for k, x in want.items()):
                    total += v
            print(fmt(total))
    except ParseError as e:
        print('invalid: %s' % e)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
