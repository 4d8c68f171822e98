package sim

import "slices"

// faults injects at most one crash, suspicion, link reset or cut per step,
// heals cuts that are due and restarts removed crashed nodes.
func (w *World[M, R]) faults() {
	w.Links.HealDue(w.Step)
	for _, n := range w.Nodes {
		if !n.Alive && n.RestartAt != 0 && w.Step >= n.RestartAt && !w.InConfig(n.Name) {
			w.restart(n)
		}
	}
	p := w.Params
	r := w.Rng.Float64()
	switch {
	case r < p.PCrash:
		if n := w.victim(); n != nil {
			w.crash(n)
		}
	case r < p.PCrash+p.PSuspect:
		if n := w.victim(); n != nil {
			w.suspect(n)
		}
	case r < p.PCrash+p.PSuspect+p.PReset:
		w.Stats.Resets++
		w.Links.ResetOne(w.Names)
	case r < p.PCrash+p.PSuspect+p.PReset+p.PCut:
		w.Stats.Cuts += w.Links.CutSome(w.Step, w.Names)
	}
}

// InConfig reports whether name is a member or the joiner of the master's
// configuration.
func (w *World[M, R]) InConfig(name string) bool {
	cfg := Config(w.Cfg)
	return slices.Contains(cfg.Members, name) || cfg.Joining == name
}

// victim picks a random live replica of the configuration to crash or
// suspect, keeping at least one other live, unsuspected complete member,
// which the master can make head or primary; nil if there is none.
func (w *World[M, R]) victim() *Replica[R] {
	var cands, complete []*Replica[R]
	for _, name := range Config(w.Cfg).Members {
		if n := w.By[name]; n.Alive && !n.Suspected && w.Rules.Complete(n.Core) {
			complete = append(complete, n)
		}
	}
	for _, n := range w.Nodes {
		if n.Alive && !n.Suspected && w.InConfig(n.Name) && (len(complete) > 1 || !slices.Contains(complete, n)) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[w.Rng.IntN(len(cands))]
}

// crash stops n: its state is lost, and so is everything in flight to it
// (and with Params.TornCrash, on some links, from it). Its clients give
// up. The master notices after a while, unless it suspected n already.
func (w *World[M, R]) crash(n *Replica[R]) {
	i, role := w.Rules.Role(n.Core)
	w.Stats.Crashes[i]++
	if !n.Suspected {
		n.DetectAt = w.Step + 1 + int64(w.Rng.IntN(int(w.Params.Detect)))
	}
	n.Alive = false
	n.Clean = nil
	if w.Params.KeepClean && n.Applied > 0 && n.Core.Status().Commit >= n.Applied {
		n.Clean = n.KVStore.Snapshot()
	}
	n.RestartAt = 0
	if w.Rng.IntN(4) != 0 {
		n.RestartAt = max(n.DetectAt, w.Step) + 1 + int64(w.Rng.IntN(int(w.Params.Restart)))
	}
	n.configs = nil
	w.Net.DropTo(n.Name)
	if w.Params.TornCrash {
		for _, o := range w.Nodes {
			// On some links what is in flight is lost, on others it still
			// arrives, so the peers' logs end at different seqs.
			if o != n && w.Rng.IntN(2) == 0 {
				w.Net.Reset(n.Name, o.Name)
			}
		}
	}
	w.giveUp(n)
	w.Trace.Logf("crash %s (%s)", n.Name, role)
}

// giveUp ends the operations of the clients waiting on a crashed node: a
// read had no effect; a write took effect if its entry is committed, and
// is in doubt otherwise (see Writes).
func (w *World[M, R]) giveUp(n *Replica[R]) {
	for _, c := range w.Clients {
		if !c.Busy || c.Node != n {
			continue
		}
		c.Busy = false
		switch {
		case c.Read:
			w.Hist.Forget(c.Op)
		case w.Writes.GiveUp(c.Write):
			w.Stats.Settled++ // another replica committed it (n was deposed)
		}
	}
}

// suspect makes the master take n for crashed (its failure detector is
// wrong: say, n lost its lease but not its links). The master removes it,
// while n goes on in its configuration until the new one reaches it; then
// its runtime restarts it empty (see deliverConfigs), as a removed replica
// must.
func (w *World[M, R]) suspect(n *Replica[R]) {
	i, role := w.Rules.Role(n.Core)
	w.Stats.Suspicions[i]++
	n.Suspected = true
	n.DetectAt = w.Step + 1 + int64(w.Rng.IntN(int(w.Params.Detect)))
	w.Trace.Logf("suspect %s (%s)", n.Name, role)
}

// Failed reports whether the master has noticed that n crashed, or takes
// it for crashed.
func (w *World[M, R]) Failed(n *Replica[R]) bool {
	return (!n.Alive || n.Suspected) && w.Step >= n.DetectAt
}

// restart brings a removed node back empty, as a new incarnation with
// lost state, knowing the current configuration (which does not include
// it).
//
// With WorldParams.KeepClean, a node whose state was all committed when
// it crashed restarts on that state half of the time instead, as a node
// that stopped cleanly keeps its disk: its core starts at the kept seq.
func (w *World[M, R]) restart(n *Replica[R]) {
	clean := n.Clean
	*n = *w.newReplica(n.Name, n.Index, n.Incarnation+1)
	if clean != nil && w.Rng.IntN(2) == 0 {
		n.Core = w.Rules.New(n.Name, clean.Seq)
		n.Restore(clean)
		n.KeptFrom = clean.Seq
		w.Stats.Kept++
		w.Trace.Logf("restart %s on its kept state at %d", n.Name, clean.Seq)
	} else {
		w.Trace.Logf("restart %s", n.Name)
	}
	w.started(n)
	n.Core.SetConfig(w.Cfg)
	w.Stats.Restarts++
}
