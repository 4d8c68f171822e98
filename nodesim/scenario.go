package nodesim

// Scenarios force, on purpose, a path that random faults reach once in
// hundreds of seeds, with the rest of the run still drawn from the seed
// (client operations, delays, which reply is lost).

// IncompleteBackupScenario makes a backup's successor process join slow,
// and kills every other member as soon as the coordinator has made it a
// backup, before it is complete: it may lack writes the old primary
// committed while it lagged as a joiner. The group must then stay down
// (coord.Plan never makes an incomplete backup primary); whatever it
// served must be linearizable. For primary-backup and checkpoint.
func IncompleteBackupScenario(protocol string) Params {
	p := DefaultParams(protocol)
	p.Faults, p.Loss = 0, 0
	phase := 0
	var joiner string
	p.Script = func(w *World) {
		cfg := w.coord.cfg
		if cfg == nil {
			return
		}
		switch phase {
		case 0: // a backup dies once the group has taken writes
			if w.stats.Get("write") >= 20 && len(cfg.Members) == 3 {
				n := w.byName(cfg.Members[2].Name)
				joiner = n.name
				n.crash("scenario: a backup dies")
				phase = 1
			}
		case 1: // its successor process is slow, so it lags as it joins
			if n := w.byName(joiner); n != nil && !n.down {
				n.slow, n.slowTill = 300, w.now+1_000_000
				phase = 2
			}
		case 2: // made backup but not yet complete: the others die
			n := w.byName(joiner)
			if cfg.Index(n.member()) > 0 && !n.rep.Status().Complete {
				for _, m := range cfg.Members {
					if o := w.byName(m.Name); o != n {
						o.crash("scenario: every complete member dies")
					}
				}
				w.stats.Inc("scenario struck")
				phase = 3
			}
		}
	}
	return p
}
