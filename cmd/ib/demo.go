package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/training/toyworld"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// demoCmd runs the toy world demo: DreamBooth, DDPO and the evaluation of
// the three models, resuming a run found in --out.
func demoCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	out := fs.String("out", "instructbooth-demo", "output folder (an interrupted demo resumes from it)")
	base := fs.String("base", "", "toy base model folder (default: the built-in model)")
	quick := fs.Bool("quick", false, "a few steps of every stage (checks the pipeline, shows no effect)")
	seed := fs.Uint64("seed", 1, "random seed of every stage")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *base == "" {
		dir, err := toyworld.BuiltinModel("")
		if err != nil {
			return err
		}
		*base = dir
	}
	o := demo.DefaultOptions(*out, *base)
	if *quick {
		o = demo.QuickOptions(*out, *base)
	}
	o.Seed = *seed
	start := time.Now()
	o.Log = func(s string) {
		fmt.Fprintf(stdout, "[%s] %s\n", time.Since(start).Round(time.Second), s)
	}
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stderr, "adapter: %s\nbase model: %s\n", e.Info, *base)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := demo.Run(ctx, e, o)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; run the same command again to resume from %s", *out)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nheld-out prompts, %d images per prompt and model (%s):\n%s", o.EvalImages, res.Elapsed.Round(time.Second), demo.Summary(res.Report))
	if len(res.Rewards) > 0 {
		fmt.Fprintf(stdout, "DDPO mean reward per epoch: %.3f\n", res.Rewards)
	}
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(*out, demo.DirResults))
	return nil
}
