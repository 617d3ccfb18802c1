//go:build unix

package gpu

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) this process has used. On a
// CPU adapter the driver's threads run in-process, so benchmarks can report
// throughput per CPU-second, which other load on the machine distorts far
// less than wall-clock time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
