// Command ib is InstructBooth's command line (no display, no GL: the
// desktop app is a separate binary).
//
//	ib selfcheck [-adapter NAME] [-seed N]
//	    print the chosen GPU adapter and check every engine op against its
//	    CPU reference.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: ib <command> [flags]

commands:
  selfcheck   print the GPU adapter and check every engine op against its CPU reference

common flags:
  -adapter    discrete, integrated, cpu, or part of an adapter's name
              (default: $%s, else discrete > integrated > cpu)
`, gpu.AdapterEnv)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "selfcheck":
		os.Exit(selfcheck(args))
	case "-h", "-help", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "ib: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
}

func selfcheck(args []string) int {
	fs := flag.NewFlagSet("selfcheck", flag.ExitOnError)
	adapter := fs.String("adapter", "", "adapter choice")
	seed := fs.Int64("seed", time.Now().UnixNano(), "random seed")
	fs.Parse(args)
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ib:", err)
		return 1
	}
	defer e.Close()
	if err := gpu.SelfCheck(e, os.Stdout, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "ib:", err)
		return 1
	}
	return 0
}
