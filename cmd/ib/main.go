// Command ib is InstructBooth's command line (no display, no GL: the
// desktop app is a separate binary).
//
//	ib selfcheck [--adapter NAME] [--seed N]
//	    print the chosen GPU adapter and check every engine op against its
//	    CPU reference.
//	ib generate --model PATH --prompt TEXT [--negative TEXT] [--steps N]
//	    [--guidance G] [--seed S] [--width W --height H] [--count N]
//	    [--sampler ddim|euler|dpm++2m] [--eta E] [--out DIR] [model flags]
//	    text-to-image; PNG files carry the parameters in text chunks.
//	ib reference --model PATH --component NAME --in IN.safetensors
//	    --out OUT.safetensors [model flags]
//	    run one model component on tensors from a file and write its
//	    outputs, with the sd-tiny fixtures' tensor names.
//	ib evaluate --model PATH [--lora FILE[:SCALE]]... --class NOUN
//	    [--identifier TOKEN] [--subject DIR] [--prompts SET|FILE]
//	    --metrics NAME:PATH,... [--images-per-prompt N] [--seed S] --out DIR
//	    score the base model and each LoRA run on a prompt set (Table 2).
//	ib personalize --model PATH --images DIR --class NOUN --out FILE [flags]
//	    DreamBooth (LoRA or full U-Net) with prior preservation; resumable.
//	ib toyworld sample|train|eval|score [flags]
//	    the built-in toy world: render scenes, train the toy base model,
//	    evaluate a model, score an image against a prompt.
//	ib demo [--out DIR] [--quick] [--base DIR] [--seed S]
//	    the whole method on the toy world: DreamBooth, DDPO and the
//	    evaluation of base, DreamBooth-only and InstructBooth models.
//	ib align --model PATH [--lora PERSONALIZED_LORA[:W]] --class NOUN
//	    [--identifier TOKEN] [--activities FILE] --reward SPEC [--epochs N]
//	    [--samples-per-epoch 16] [--batch 8] [--micro-batch 4] [--steps 50]
//	    [--guidance 7.5]
//	    [--timestep-fraction F] [--rank 4] [--lr X] [--seed S]
//	    [--resolution PX] --out FILE [--format kohya|diffusers|peft]
//	    [--work DIR] [model flags]
//	    DDPO alignment: train a LoRA maximising a reward; resumable.
//
// Model flags (generate and reference): --model is a diffusers folder or a
// single-file checkpoint; --config DIR (diffusers-style folder with the
// configs and tokenizer for a single file), --tokenizer PATH, --fp16 (read
// diffusers' .fp16 variants), --f16-weights (binary16 weights on the GPU;
// default on for generate, off for reference so fixture comparisons stay
// fp32-exact), --lora FILE[:SCALE] (a LoRA, its scale multiplied by
// SCALE; repeat the flag to apply several at once).
//
// Flags take one or two dashes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/instructbooth/instructbooth/training/reward"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
	"io"
	"os"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
)

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage: ib <command> [flags]

commands:
  selfcheck   print the GPU adapter and check every engine op against its CPU reference
  generate    text-to-image: ib generate --model PATH --prompt TEXT [flags]
  personalize DreamBooth on a folder of subject images:
              ib personalize --model PATH --images DIR --class NOUN --out FILE [--mode lora|full] [flags]
  reference   run one component on tensors from a safetensors file:
              ib reference --model PATH --component NAME --in IN --out OUT [--lora FILE[:SCALE]]
              components: text_encoder, unet, vae_encode, vae_decode
  evaluate    score runs (base, base+LoRA) on a prompt set with CLIP-T, PickScore, ...:
              ib evaluate --model PATH [--lora FILE]... --class NOUN --metrics NAME:PATH,... --out DIR
  toyworld    the built-in toy world: ib toyworld sample|train|eval|score [flags]
  demo        the whole method on the toy world (DreamBooth, DDPO, evaluation): ib demo [--out DIR] [--quick]
  align       DDPO alignment of a (personalised) model to a reward, writing a LoRA:
              ib align --model PATH [--lora FILE[:W]] --class NOUN --identifier TOKEN
                       --reward SPEC --out FILE [flags]

--model is a diffusers folder or a single-file checkpoint (.safetensors);
model flags of generate and reference: --config DIR, --tokenizer PATH,
--fp16, --f16-weights (default on for generate, off for reference),
--lora FILE[:SCALE] (repeatable).

Run "ib <command> --help" for a command's flags.

common flags:
  --adapter   discrete, integrated, cpu, or part of an adapter's name
              (default: $%s, else discrete > integrated > cpu)
`, gpu.AdapterEnv)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args (without the program name) and
// returns the exit status: 0 success, 1 failure, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		usage(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	demo.Register(reward.Default) // --reward toyworld, --metrics toyworld-align,toyworld-fidelity
	var err error
	switch cmd {
	case "selfcheck":
		err = selfcheck(args, stdout, stderr)
	case "generate":
		err = generateCmd(args, stdout, stderr)
	case "reference":
		err = referenceCmd(args, stdout, stderr)
	case "evaluate":
		err = evaluateCmd(args, stdout, stderr)
	case "personalize":
		err = personalizeCmd(args, stdout, stderr)
	case "toyworld":
		err = toyworldCmd(args, stdout, stderr)
	case "demo":
		err = demoCmd(args, stdout, stderr)
	case "align":
		err = alignCmd(args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "ib: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ib %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "ib %s: %v\n", cmd, err)
		return 1
	}
}

// usageError marks bad command-line usage (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ib "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args, turning parse errors into usage errors and refusing
// stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func selfcheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("selfcheck", stderr)
	adapter := fs.String("adapter", "", "adapter choice")
	seed := fs.Int64("seed", time.Now().UnixNano(), "random seed")
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	return gpu.SelfCheck(e, stdout, *seed)
}
