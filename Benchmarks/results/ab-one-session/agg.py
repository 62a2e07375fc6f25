"""Medians of the interleaved one-session A/B runs: DIR/{session,group}-K/latest.json
(python3 agg.py DIR; the runs' own tables are copied beside this file)."""
import glob, os, statistics as st, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rows = {}
for side in ('session', 'group'):
    for f in sorted(glob.glob(f'{root}/{side}-*/latest.json')) + sorted(glob.glob(f'{root}/{side}-*.json')):
        for r in __import__('json').load(open(f))['results']['restart']:
            s, w = r['steady'], r['window']
            wrk = (r.get('wrk') or {}).get('p99', 0)
            rows.setdefault((r['contender'], r['variant'], side), []).append(
                (s['p99'], s['max'], wrk, w['p99'], w['p99'] / s['p99'], w['max'], r.get('allNewSeconds') or 0))

def m(v, i, fmt='{:.1f}'):
    return fmt.format(st.median(x[i] for x in v)) + ' (' + ', '.join(fmt.format(x[i]) for x in v) + ')'

print('| contender | app | workers in | steady p99 ms | steady max ms | wrk p99 ms | window p99 ms | ×steady | window max ms | all new s |')
print('|---|---|---|---|---|---|---|---|---|---|')
for k in sorted(rows, key=lambda k: (k[1], k[0], k[2] != 'session')):
    v = rows[k]
    side = 'a session each' if k[2] == 'session' else "baton's session"
    print(f'| {k[0]} | {k[1]} | {side} | {m(v,0)} | {m(v,1,"{:.0f}")} | {m(v,2)} | {m(v,3)} | {m(v,4)} | {m(v,5,"{:.0f}")} | {m(v,6)} |')
