// Command pause is the process that holds a pod sandbox's namespaces open: it sleeps,
// reaps the children that are re-parented to it, and exits on SIGINT or SIGTERM.
// No image can be pulled here, so the test bed builds its own FROM-scratch sandbox image
// around this static binary instead of pulling registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
