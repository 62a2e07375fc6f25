"""Summarizes the deploy-under-load A/B runs in a folder (this one, or the one given: JSON results
and BENCH_DEBUG logs)."""
import json,os,re,statistics,datetime,sys
D=sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
def ts(s): return datetime.datetime.strptime(s,'%H:%M:%S.%f')
out={}
for side in ('before','after'):
    dratios=[];lag=[];ratios=[];first=[];cli=[];req2start=[];gaps=[];chain=[];failed=0;total=0;runs=0
    for run in (1,2,3):
        try: d=json.load(open(f'{D}/deploy-under-load-boot2-{side}-run{run}.json'))
        except Exception as e: continue
        runs+=1
        failed+=d['failedRequests']; total+=d['totalRequests']
        for x in d['deploys']:
            if x['strategy']=='surge' and x.get('allNewRatio'): ratios.append(x['allNewRatio']); first.append(x['firstLineSeconds'])
        log=open(f'{D}/deploy-under-load-boot2-{side}-run{run}.log').read().split('\n')
        # per deploy blocks: 'CLI started HH:MM:SS.mmm' then baton log lines
        block=None
        blocks=[]
        for l in log:
            m=re.match(r'CLI started (\S+)',l)
            if m: block={'cli':ts(m.group(1)),'lines':[]}; blocks.append(block); continue
            if block is not None and l.startswith('20'): block['lines'].append(l)
        surge=[x for x in d['deploys']]
        for i,b in enumerate(blocks):
            t=lambda l: ts(l[11:23])
            x=surge[i] if i < len(surge) else None
            exits=[t(l) for l in b['lines'] if 'worker exited' in l and 'was=draining' in l]
            if x and x['strategy']=='surge' and len(exits)>=4 and x.get('bootPlusDrainSeconds'):
                allnew=(exits[3]-b['cli']).total_seconds()
                dratios.append(allnew/x['bootPlusDrainSeconds'])
                if x.get('allNewSeconds'): lag.append((x['allNewSeconds']-allnew)*1000)
            req=[t(l) for l in b['lines'] if 'deploy requested' in l]
            starts=[t(l) for l in b['lines'] if 'worker started' in l]
            if req: cli.append((req[0]-b['cli']).total_seconds()*1000)
            if req and starts: req2start.append((starts[0]-req[0]).total_seconds()*1000)
            # replace gaps: an exit of a draining worker followed by a worker started on the same slot
            ex={}
            for l in b['lines']:
                m=re.search(r'slot=(\d+)',l)
                if not m: continue
                s=m.group(1)
                if 'worker exited' in l and 'was=draining' in l: ex[s]=t(l)
                elif 'worker started' in l and s in ex:
                    gaps.append((t(l)-ex.pop(s)).total_seconds()*1000)
            if len(starts)>=4 and (starts[3]-starts[0]).total_seconds()<1.5: chain.append((starts[3]-starts[0]).total_seconds()*1000)
    def s(v,f='%.2f'):
        if not v: return '-'
        return (f+' ('+f+'–'+f+'), n=%d')%(statistics.median(v),min(v),max(v),len(v))
    print(f'{side}: runs {runs}, failed {failed}/{total}')
    print('  surge allNew ratio', s(ratios,'%.3f'))
    print('  surge allNew ratio from the daemon log (4th old worker exit)', s(dratios,'%.3f'))
    print('  CLI-line observation lag of the last drain ms', s(lag,'%.0f'))
    print('  CLI spawn -> daemon deploy requested ms', s(cli,'%.0f'))
    print('  requested -> first worker started ms', s(req2start,'%.0f'))
    print('  replace slot exit -> spawn ms', s(gaps,'%.0f'))
    print('  surge: first to 4th worker started ms', s(chain,'%.0f'))
    print('  bench firstLine s', s(first,'%.3f'))
