package kv

// maxGlobNesting bounds the recursion of globMatch, as Redis bounds it, so
// a pattern of many stars cannot exhaust the stack.
const maxGlobNesting = 1000

// globMatch reports whether s matches the glob pattern with the rules of
// Redis's stringmatchlen: '*' any run, '?' any byte, '[...]' a class with
// ranges ("a-z", either order), '^' negation and '\' escapes, and '\'
// escaping any other byte. An unterminated class ends at the pattern's end.
func globMatch(pattern, s []byte) bool {
	skipLonger := false
	return globMatchAt(pattern, s, &skipLonger, 0)
}

// globMatchAt is stringmatchlen_impl. skipLonger is set once the rest of a
// pattern after a star failed against every suffix: an earlier star
// matching more could only move that rest further right, so the whole match
// fails fast instead of taking exponential time.
func globMatchAt(pat, s []byte, skipLonger *bool, nesting int) bool {
	if nesting > maxGlobNesting {
		return false
	}
	i, j := 0, 0
	for i < len(pat) && j < len(s) {
		switch pat[i] {
		case '*':
			for i+1 < len(pat) && pat[i+1] == '*' {
				i++
			}
			if i == len(pat)-1 {
				return true
			}
			for ; j < len(s); j++ {
				if globMatchAt(pat[i+1:], s[j:], skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
			}
			*skipLonger = true
			return false
		case '?':
			j++
		case '[':
			var ok bool
			if i, ok = matchClass(pat, i+1, s[j]); !ok {
				return false
			}
			j++
		case '\\':
			if i+1 < len(pat) {
				i++
			}
			fallthrough
		default:
			if pat[i] != s[j] {
				return false
			}
			j++
		}
		i++
		if j == len(s) {
			for i < len(pat) && pat[i] == '*' {
				i++
			}
			break
		}
	}
	return i == len(pat) && j == len(s)
}

// matchClass matches c against the class whose body starts at pat[i] (just
// after '['). It returns the index of the class's last byte (its ']', or the
// pattern's last byte when unterminated) and whether c matched.
func matchClass(pat []byte, i int, c byte) (int, bool) {
	not := i < len(pat) && pat[i] == '^'
	if not {
		i++
	}
	match := false
	for {
		left := len(pat) - i
		switch {
		case left >= 2 && pat[i] == '\\':
			i++
			if pat[i] == c {
				match = true
			}
		case left > 0 && pat[i] == ']':
			return i, match != not
		case left == 0:
			return i - 1, match != not
		case left >= 3 && pat[i+1] == '-':
			lo, hi := pat[i], pat[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= c && c <= hi {
				match = true
			}
			i += 2
		default:
			if pat[i] == c {
				match = true
			}
		}
		i++
	}
}
