// Package dreambooth personalises Stable Diffusion 1.x on a few subject
// images (Ruiz et al., "DreamBooth", CVPR 2023): the U-Net learns to draw
// the subject for a prompt "a [identifier] [description] [class noun]"
// while a prior-preservation loss on images the base model drew for "a
// [class noun]" keeps it from forgetting the class. Two modes: LoRA
// adapters on the attention projections (default), or full U-Net fine-
// tuning. The text encoder stays frozen.
//
// Every random draw of step k (image choice, flip, timesteps, noise, the
// VAE posterior sample) comes from training.Stream(seed, k, purpose), and
// checkpoints hold the trainable tensors and the AdamW state, so a run
// resumed from a checkpoint computes what the uninterrupted run computes.
package dreambooth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Mode is what is trained.
type Mode string

const (
	ModeLoRA Mode = "lora" // low-rank adapters on the U-Net (base weights frozen)
	ModeFull Mode = "full" // every U-Net weight
)

// Defaults of Config's zero fields.
const (
	DefaultIdentifier  = "sks"
	DefaultRank        = 4
	DefaultSteps       = 400
	DefaultResolution  = 512
	DefaultClassImages = 200
	DefaultLRLoRA      = 1e-4
	DefaultLRFull      = 2e-5
	DefaultPriorWeight = 1.0
	DefaultCheckpoint  = 100 // steps between checkpoints
	DefaultClassSteps  = 25  // sampling steps of a class image
	DefaultKeep        = 2   // checkpoints kept on disk
)

// Config is one DreamBooth run. Zero fields take the defaults above
// (WithDefaults); booleans are phrased so that false is the default.
type Config struct {
	Mode        Mode   // ModeLoRA when ""
	Identifier  string // the rare token naming the subject (DefaultIdentifier)
	ClassNoun   string // required, e.g. "dog"
	Description string // optional words between identifier and noun, e.g. "fluffy"

	// LoRA mode: rank and alpha (scale alpha/rank; alpha 0 means alpha =
	// rank, scale 1). Targets are the attention projections (to_q, to_k,
	// to_v, to_out.0 of every attn1/attn2), plus the feed-forward layers
	// (ff.net.0.proj, ff.net.2) with FeedForward and the transformers'
	// proj_in/proj_out with ProjInOut.
	Rank        int
	Alpha       float32
	FeedForward bool
	ProjInOut   bool

	// Optimiser: AdamW. LR defaults per mode (1e-4 LoRA, 2e-5 full);
	// betas 0.9/0.999 for LoRA and 0.9/0.99 for full fine-tuning; weight
	// decay 0.01; gradients clipped to a global norm of MaxGradNorm (1;
	// negative disables clipping).
	LR          float32
	Beta1       float32
	Beta2       float32
	WeightDecay float32
	MaxGradNorm float32

	Steps      int    // optimiser steps in all (DefaultSteps)
	Resolution int    // square training resolution in pixels, a multiple of 64 (DefaultResolution)
	Seed       uint64 // the run's random streams

	// Prior preservation: loss = MSE(subject) + PriorWeight MSE(class).
	// NoPrior trains on the subject alone (batch 1).
	NoPrior     bool
	PriorWeight float32 // DefaultPriorWeight when 0
	ClassImages int     // class images generated once and cached (DefaultClassImages)
	ClassSteps  int     // sampling steps per class image (DefaultClassSteps)

	// CheckpointEvery saves a checkpoint every so many steps
	// (DefaultCheckpoint); one is always saved at the end and on
	// cancellation. Keep is the number of checkpoints kept (DefaultKeep).
	CheckpointEvery int
	Keep            int

	// ValidateEvery > 0 generates ValidationImages images (1 when 0) of
	// ValidationPrompt (the instance prompt when "") with ValidationSeed
	// every so many steps and at the end, at ValidationSteps sampling steps
	// (DefaultClassSteps when 0).
	ValidateEvery    int
	ValidationPrompt string
	ValidationImages int
	ValidationSeed   uint64
	ValidationSteps  int

	// NoGradientCheckpointing keeps every activation for the backward pass
	// (faster, much more memory). Off by default: checkpointing is on.
	NoGradientCheckpointing bool

	// MemoryBudget is the device memory in bytes that full fine-tuning
	// may assume; 0 asks DeviceMemory.
	MemoryBudget uint64
}

// WithDefaults returns c with zero fields set.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeLoRA
	}
	if c.Identifier == "" {
		c.Identifier = DefaultIdentifier
	}
	if c.Rank == 0 {
		c.Rank = DefaultRank
	}
	if c.Alpha == 0 {
		c.Alpha = float32(c.Rank)
	}
	if c.LR == 0 {
		c.LR = DefaultLRLoRA
		if c.Mode == ModeFull {
			c.LR = DefaultLRFull
		}
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
		if c.Mode == ModeFull {
			c.Beta2 = 0.99
		}
	}
	if c.WeightDecay == 0 {
		c.WeightDecay = 0.01
	}
	if c.MaxGradNorm == 0 {
		c.MaxGradNorm = 1
	}
	if c.Steps == 0 {
		c.Steps = DefaultSteps
	}
	if c.Resolution == 0 {
		c.Resolution = DefaultResolution
	}
	if c.PriorWeight == 0 {
		c.PriorWeight = DefaultPriorWeight
	}
	if c.ClassImages == 0 {
		c.ClassImages = DefaultClassImages
	}
	if c.ClassSteps == 0 {
		c.ClassSteps = DefaultClassSteps
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = DefaultCheckpoint
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	if c.ValidationImages == 0 {
		c.ValidationImages = 1
	}
	if c.ValidationSteps == 0 {
		c.ValidationSteps = DefaultClassSteps
	}
	return c
}

// Validate reports the first problem of c (after WithDefaults).
func (c Config) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("dreambooth: "+f, a...) }
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case c.Mode != ModeLoRA && c.Mode != ModeFull:
		return bad("mode %q: want lora or full", c.Mode)
	case strings.TrimSpace(c.ClassNoun) == "":
		return bad("the class noun is required (e.g. dog)")
	case strings.TrimSpace(c.Identifier) == "" || strings.ContainsAny(c.Identifier, " \t\n"):
		return bad("identifier %q: want one word", c.Identifier)
	case c.Rank < 1 || c.Rank > 1024:
		return bad("rank %d: want 1..1024", c.Rank)
	case !finite(c.Alpha) || c.Alpha <= 0:
		return bad("alpha %g: want > 0", c.Alpha)
	case !finite(c.LR) || c.LR <= 0 || c.LR > 1:
		return bad("learning rate %g: want in (0, 1]", c.LR)
	case !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 >= 0 && c.Beta2 < 1):
		return bad("betas %g, %g: want in [0, 1)", c.Beta1, c.Beta2)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return bad("weight decay %g: want >= 0", c.WeightDecay)
	case !finite(c.MaxGradNorm):
		return bad("max gradient norm %g", c.MaxGradNorm)
	case c.Steps < 1:
		return bad("%d steps: want at least 1", c.Steps)
	case c.Resolution < 8 || c.Resolution%8 != 0 || c.Resolution > 2048:
		return bad("resolution %d: want a multiple of 8 (64 for SD 1.x) up to 2048", c.Resolution)
	case !finite(c.PriorWeight) || c.PriorWeight < 0:
		return bad("prior loss weight %g: want >= 0", c.PriorWeight)
	case !c.NoPrior && (c.ClassImages < 1 || c.ClassImages > 100000):
		return bad("%d class images: want 1..100000", c.ClassImages)
	case c.ClassSteps < 1 || c.ClassSteps > 1000 || c.ValidationSteps < 1 || c.ValidationSteps > 1000:
		return bad("sampling steps must be 1..1000")
	case c.CheckpointEvery < 1:
		return bad("checkpoint interval %d: want >= 1", c.CheckpointEvery)
	case c.ValidateEvery < 0 || c.ValidationImages < 1:
		return bad("validation every %d steps, %d images", c.ValidateEvery, c.ValidationImages)
	}
	return nil
}

// InstancePrompt is "a [identifier] [description] [class noun]".
func (c Config) InstancePrompt() string {
	return strings.Join(strings.Fields("a "+c.Identifier+" "+c.Description+" "+c.ClassNoun), " ")
}

// ClassPrompt is "a [class noun]".
func (c Config) ClassPrompt() string {
	return strings.Join(strings.Fields("a "+c.ClassNoun), " ")
}

// fingerprint is what a checkpoint must agree on to be resumed: every
// setting that changes the computation of a step, and the inputs. Steps,
// intervals and validation settings may change between runs.
type fingerprint struct {
	Mode                              Mode
	Prompt, ClassPrompt               string
	Rank                              int
	Alpha                             float32
	Modules                           string // hash of the adapted module list (LoRA)
	LR, Beta1, Beta2, WD, MaxGradNorm float32
	Resolution                        int
	Seed                              uint64
	Prior                             bool
	PriorWeight                       float32
	ClassImages                       int
	BaseModel                         string
	Subject                           string // hash of the subject images' hashes
}

func (c Config) fingerprint(modules []string, baseModel string, subject []string) fingerprint {
	f := fingerprint{
		Mode: c.Mode, Prompt: c.InstancePrompt(), LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2,
		WD: c.WeightDecay, MaxGradNorm: c.MaxGradNorm, Resolution: c.Resolution, Seed: c.Seed,
		Prior: !c.NoPrior, BaseModel: baseModel,
		Subject: listHash(subject),
	}
	if f.Prior {
		f.ClassPrompt, f.PriorWeight, f.ClassImages = c.ClassPrompt(), c.PriorWeight, c.ClassImages
	}
	if c.Mode == ModeLoRA {
		f.Rank, f.Alpha, f.Modules = c.Rank, c.Alpha, listHash(modules)
	}
	return f
}

// diff lists the fields in which a checkpoint's fingerprint differs.
func (f fingerprint) diff(g fingerprint) []string {
	var out []string
	add := func(name string, a, b any) {
		if a != b {
			out = append(out, fmt.Sprintf("%s %v (checkpoint) vs %v (now)", name, a, b))
		}
	}
	add("mode", f.Mode, g.Mode)
	add("prompt", f.Prompt, g.Prompt)
	add("class prompt", f.ClassPrompt, g.ClassPrompt)
	add("rank", f.Rank, g.Rank)
	add("alpha", f.Alpha, g.Alpha)
	add("LoRA modules", f.Modules, g.Modules)
	add("learning rate", f.LR, g.LR)
	add("beta1", f.Beta1, g.Beta1)
	add("beta2", f.Beta2, g.Beta2)
	add("weight decay", f.WD, g.WD)
	add("max gradient norm", f.MaxGradNorm, g.MaxGradNorm)
	add("resolution", f.Resolution, g.Resolution)
	add("seed", f.Seed, g.Seed)
	add("prior preservation", f.Prior, g.Prior)
	add("prior weight", f.PriorWeight, g.PriorWeight)
	add("class images", f.ClassImages, g.ClassImages)
	add("base model", f.BaseModel, g.BaseModel)
	add("subject images", f.Subject, g.Subject)
	return out
}

// listHash is a short order-independent hash of a list of strings.
func listHash(xs []string) string {
	s := append([]string(nil), xs...)
	sort.Strings(s)
	h := sha256.Sum256([]byte(strings.Join(s, "\n")))
	return hex.EncodeToString(h[:8])
}
