package resp

// AppendCommand appends args as a multibulk command, the form every Redis
// client sends: *N\r\n followed by one bulk string per argument.
func AppendCommand(b []byte, args ...[]byte) []byte {
	b = AppendArray(b, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// AppendCommandStrings is AppendCommand for string arguments.
func AppendCommandStrings(b []byte, args ...string) []byte {
	b = AppendArray(b, len(args))
	for _, a := range args {
		b = AppendBulkString(b, a)
	}
	return b
}
