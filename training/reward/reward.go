// Package reward holds the rewards that RL alignment (training/ddpo)
// maximises: the Scorer interface, the cheap pixel rewards (JPEG size as
// in DDPO, mean brightness), and a registry that turns a "--reward" spec
// ("jpeg", "brightness", "imagereward:PATH", ...) into a Scorer.
//
// Model-backed rewards (ImageReward, CLIP score, PickScore) live with their
// models; the program that links them registers a constructor under their
// name (Register), so this package imports no model.
package reward

import (
	"context"
	"fmt"
	"image"
	"sort"
	"strings"
	"sync"
)

// Scorer rates generated images. Score returns one reward per image,
// larger is better; prompts[i] is the text images[i] was generated from
// (len(prompts) == len(images)). Images are the VAE's decoded 8-bit
// output at full resolution. A Scorer that holds resources (a model on the
// GPU) may also implement io.Closer.
type Scorer interface {
	Name() string
	Score(ctx context.Context, images []*image.NRGBA, prompts []string) ([]float64, error)
}

// Constructor builds a Scorer from the argument of a spec (the text after
// "name:", e.g. a model path; "" when the spec has none).
type Constructor func(arg string) (Scorer, error)

// Registry maps reward names to constructors. The zero value is empty and
// ready to use; NewRegistry returns one holding the built-in rewards.
type Registry struct {
	mu    sync.Mutex
	ctors map[string]entry
}

type entry struct {
	ctor Constructor
	help string
}

// NewRegistry returns a registry with the built-in rewards:
//
//	jpeg                   JPEG compressibility: -(size in kB at quality 95)
//	jpeg-incompressibility +(size in kB at quality 95)
//	brightness             mean pixel value in [0, 1]
func NewRegistry() *Registry {
	r := &Registry{}
	r.RegisterHelp("jpeg", "JPEG compressibility: minus the size in kB at quality 95 (DDPO)", noArg("jpeg", func() Scorer { return JPEG{} }))
	r.RegisterHelp("jpeg-incompressibility", "the size in kB at quality 95 (DDPO)", noArg("jpeg-incompressibility", func() Scorer { return JPEG{Incompressible: true} }))
	r.RegisterHelp("brightness", "mean pixel value over R, G, B in [0, 1]", noArg("brightness", func() Scorer { return Brightness{} }))
	return r
}

func noArg(name string, f func() Scorer) Constructor {
	return func(arg string) (Scorer, error) {
		if arg != "" {
			return nil, fmt.Errorf("reward %q takes no argument (got %q)", name, arg)
		}
		return f(), nil
	}
}

// Register binds name to c, replacing an earlier binding of the same name
// (the latest wins, so a program can bind a model-backed reward to its GPU
// engine once it has opened one). Names are lower case without ':'.
func (r *Registry) Register(name string, c Constructor) { r.RegisterHelp(name, "", c) }

// RegisterHelp is Register with a one-line description for listings.
func (r *Registry) RegisterHelp(name, help string, c Constructor) {
	if name == "" || strings.ContainsAny(name, ": \t") || name != strings.ToLower(name) || c == nil {
		panic(fmt.Sprintf("reward: bad registration %q", name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctors == nil {
		r.ctors = map[string]entry{}
	}
	r.ctors[name] = entry{c, help}
}

// Names lists the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.ctors))
	for k := range r.ctors {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Help returns "name  description" lines for every registered reward.
func (r *Registry) Help() string {
	var b strings.Builder
	for _, n := range r.Names() {
		r.mu.Lock()
		h := r.ctors[n].help
		r.mu.Unlock()
		fmt.Fprintf(&b, "  %-24s %s\n", n, h)
	}
	return b.String()
}

// New parses spec, "name" or "name:ARG" (ARG is everything after the first
// ':', so paths may contain ':'), and builds the Scorer. An unknown name
// is an error listing the available ones.
func (r *Registry) New(spec string) (Scorer, error) {
	name, arg, _ := strings.Cut(strings.TrimSpace(spec), ":")
	name = strings.ToLower(name)
	if name == "" {
		return nil, fmt.Errorf("reward: empty spec; available: %s", strings.Join(r.Names(), ", "))
	}
	r.mu.Lock()
	e, ok := r.ctors[name]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("reward %q is not available in this program; available: %s", name, strings.Join(r.Names(), ", "))
	}
	s, err := e.ctor(arg)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", spec, err)
	}
	return s, nil
}

// Default is the process-wide registry: the built-ins plus whatever the
// program registers.
var Default = NewRegistry()

// Register binds name to c in Default (see Registry.Register).
func Register(name string, c Constructor) { Default.Register(name, c) }

// New builds a Scorer from spec with Default (see Registry.New).
func New(spec string) (Scorer, error) { return Default.New(spec) }

// Names lists Default's rewards.
func Names() []string { return Default.Names() }

// check validates a Score call's arguments.
func check(name string, images []*image.NRGBA, prompts []string) error {
	if len(prompts) != len(images) {
		return fmt.Errorf("reward %s: %d images and %d prompts", name, len(images), len(prompts))
	}
	for i, im := range images {
		if im == nil || im.Rect.Empty() {
			return fmt.Errorf("reward %s: image %d is empty", name, i)
		}
	}
	return nil
}
