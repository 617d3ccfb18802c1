// Command instructbooth is the InstructBooth desktop app.
package main

import (
	"flag"

	fyneapp "fyne.io/fyne/v2/app"

	"github.com/instructbooth/instructbooth/app"
	"github.com/instructbooth/instructbooth/gpu"
)

func main() {
	adapter := flag.String("adapter", "", "GPU adapter: discrete, integrated, cpu or part of a name (default $"+gpu.AdapterEnv+")")
	flag.Parse()
	a := fyneapp.NewWithID("io.instructbooth.app")
	u := app.New(a, func() (*gpu.Engine, error) { return gpu.Open(gpu.Options{Adapter: *adapter}) })
	defer u.Close()
	u.Win.ShowAndRun()
}
