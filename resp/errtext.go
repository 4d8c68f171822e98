package resp

import "strings"

// UnknownCommandError is Redis 7's exact error line for an unknown command:
// the name cut to 128 bytes, then quoted arguments while the quoted text is
// under 128 bytes. Clients and tests match on this text, so every layer that
// can meet an unknown command uses this one function.
func UnknownCommandError(args [][]byte) string {
	if len(args) == 0 {
		return "ERR empty command"
	}
	var sb strings.Builder
	sb.WriteString("ERR unknown command '")
	sb.Write(clip(args[0], 128))
	sb.WriteString("', with args beginning with: ")
	used := 0
	for _, a := range args[1:] {
		if used >= 128 {
			break
		}
		a = clip(a, 128-used)
		used += len(a) + 3
		sb.WriteByte('\'')
		sb.Write(a)
		sb.WriteString("' ")
	}
	return sb.String()
}

// ArityError is Redis's error line for a wrong argument count; name is the
// command's lower-case name ("get", or "client|setname" for a subcommand).
func ArityError(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// UnknownSubcommandError is Redis's line for an unknown subcommand of cmd
// (upper case, as in "CLIENT").
func UnknownSubcommandError(sub []byte, cmd string) string {
	return "ERR unknown subcommand '" + string(clip(sub, 128)) + "'. Try " + cmd + " HELP."
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
