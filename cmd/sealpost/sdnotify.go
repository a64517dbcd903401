package main

import (
	"net"
	"os"
)

// notifier tells systemd what the agent is doing (sd_notify(3)) when it runs as a Type=notify
// service: READY=1 once its control socket answers, RELOADING=1 and READY=1 around a SIGHUP
// restart, STOPPING=1 when it begins to stop, STATUS= for `systemctl status`. Its zero value (no
// $NOTIFY_SOCKET: not under systemd) does nothing. The protocol is one datagram of
// newline-separated VAR=value lines to a Unix socket; no library needed.
type notifier struct {
	addr string // $NOTIFY_SOCKET as systemd set it: a path, or @name for an abstract socket
}

// newNotifier takes $NOTIFY_SOCKET and removes it from the environment (as sd_notify's
// unset_environment does), so that nothing started later (a password command, say) mistakes
// itself for the service. The programs run for peers get their own environment anyway.
func newNotifier() notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return notifier{addr: addr}
}

// notify sends state, like "READY=1\nSTATUS=serving". Nothing to do without a socket.
func (n notifier) notify(state string) error {
	if n.addr == "" {
		return nil
	}
	// An abstract socket's name starts with '@'; Go's net passes that to Linux as the leading NUL
	// such a name has there.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
