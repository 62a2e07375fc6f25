"""Medians of the interleaved boot_nice A/B runs (n0-K.md, n10-K.md beside this file)."""
import glob, os, re, statistics as st
here = os.path.dirname(os.path.abspath(__file__))

def table(lines, header):
    i = next(k for k, l in enumerate(lines) if l.startswith(header))
    out = []
    for l in lines[i + 2:]:
        if not l.startswith('|'): break
        out.append([x.strip() for x in l.split('|')[1:-1]])
    return out

rows = {}
for n in ('0', '10'):
    for f in sorted(glob.glob(f'{here}/n{n}-*.md')):
        lines = open(f).read().split('\n')
        steady = {(c[0], c[1]): float(c[4].split()[0]) for c in table(lines, '| contender | app | req/s')}
        for c in table(lines, '| contender | app | completed'):
            t = re.findall(r'×([\d.]+)', c[7])
            rows.setdefault((c[0], c[1], n), []).append(
                (steady[(c[0], c[1])], float(c[6].split()[0]), float(re.search(r'×([\d.]+)', c[6]).group(1)), float(t[0]), float(t[1]), float(c[10])))

def m(v, i, fmt='{:.1f}'):
    return fmt.format(st.median(x[i] for x in v)) + ' (' + ', '.join(fmt.format(x[i]) for x in v) + ')'

print('| contender | app | boot_nice | steady p99 ms | window p99 ms | ×steady | surge ×| replace × | all new s |')
print('|---|---|---|---|---|---|---|---|---|')
for k in sorted(rows, key=lambda k: (k[1], k[0], int(k[2]))):
    v = rows[k]
    print(f'| {k[0]} | {k[1]} | {k[2]} | {m(v,0)} | {m(v,1)} | {m(v,2)} | {m(v,3)} | {m(v,4)} | {m(v,5)} |')
