package dreambooth

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/sd"
)

// MemoryEnv overrides the device memory the trainer assumes, e.g. "8GiB",
// "8000MiB", "8G" or a byte count. wgpu does not report a GPU's memory.
const MemoryEnv = "INSTRUCTBOOTH_GPU_MEMORY"

// MemoryEstimate is the engine memory one training step needs, by the
// engine's accounting categories.
type MemoryEstimate struct {
	Weights     uint64 // base model (as loaded) plus trained adapters
	Gradients   uint64 // one f32 gradient per trained value
	Optimizer   uint64 // AdamW's two moments per trained value
	Activations uint64 // peak activations of forward + backward, scratch included
	Total       uint64
	Trainable   int64 // trained values
}

func (m MemoryEstimate) String() string {
	return fmt.Sprintf("weights %s, gradients %s, optimizer %s, activations %s", gib(m.Weights), gib(m.Gradients), gib(m.Optimizer), gib(m.Activations))
}

func gib(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// EstimateMemory estimates the peak engine memory of one training step of
// cfg on a U-Net of configuration u. baseWeights is what the loaded
// model's weights take (MemStats().Live[gpu.Weights] after loading); 0
// counts the U-Net alone in f32. The activation figure follows the U-Net's
// structure: with gradient checkpointing, every block's output (and the
// skip tensors and their gradients) stays for the backward pass and one
// block at a time is recomputed, so the largest block's internals (the
// first level's transformer: about 40 tensors of [N, HW, C], the GEGLU
// feed-forward 12 of them) come on top; without it every block keeps its
// internals.
func EstimateMemory(u sd.UNetConfig, cfg Config, baseWeights uint64) MemoryEstimate {
	cfg = cfg.WithDefaults()
	schema := sd.UNetSchema(u)
	var unetVals int64
	for _, s := range schema {
		unetVals += int64(prod(s))
	}
	var m MemoryEstimate
	m.Weights = baseWeights
	if m.Weights == 0 {
		m.Weights = uint64(unetVals) * 4
	}
	if cfg.Mode == ModeFull {
		m.Trainable = unetVals
	} else {
		for _, p := range targetsFromSchema(schema, cfg) {
			s := schema[p+".weight"]
			in := prod(s[1:])
			m.Trainable += int64(cfg.Rank * (in + s[0]))
		}
		m.Weights += uint64(m.Trainable) * 4
	}
	m.Gradients = uint64(m.Trainable) * 4
	m.Optimizer = uint64(m.Trainable) * 8
	m.Activations = activationBytes(u, cfg)
	m.Total = m.Weights + m.Gradients + m.Optimizer + m.Activations
	return m
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// targetsFromSchema is TargetModules over a schema's keys.
func targetsFromSchema(s sd.Schema, cfg Config) []string {
	var out []string
	for _, k := range s.Keys() {
		p, ok := strings.CutSuffix(k, ".weight")
		if !ok || !strings.Contains(p, ".attentions.") {
			continue
		}
		attn := (strings.Contains(p, ".attn1.") || strings.Contains(p, ".attn2.")) &&
			(strings.HasSuffix(p, ".to_q") || strings.HasSuffix(p, ".to_k") || strings.HasSuffix(p, ".to_v") || strings.HasSuffix(p, ".to_out.0"))
		ff := cfg.FeedForward && (strings.HasSuffix(p, ".ff.net.0.proj") || strings.HasSuffix(p, ".ff.net.2"))
		pio := cfg.ProjInOut && (strings.HasSuffix(p, ".proj_in") || strings.HasSuffix(p, ".proj_out"))
		if attn || ff || pio {
			out = append(out, p)
		}
	}
	return out
}

// activationBytes walks the U-Net's blocks at the training latent size.
func activationBytes(u sd.UNetConfig, cfg Config) uint64 {
	n := 2
	if cfg.NoPrior {
		n = 1
	}
	h := cfg.Resolution / 8
	unit := func(c, r int) uint64 { return uint64(n) * uint64(c) * uint64(r) * uint64(r) * 4 }
	ctxLen := 77
	// Internals of one block (what its backward needs), in bytes.
	resnet := func(cin, c, r int) uint64 { return 3*unit(cin, r) + 7*unit(c, r) }
	transformer := func(c, r int) uint64 {
		// norm, proj_in, permute; self-attention (norm, q, k, v, head
		// splits, output, merge, to_out, residual); cross-attention (norm,
		// q, split, output, merge, to_out, residual; k, v of the context);
		// GEGLU feed-forward (norm, proj 8C, GEGLU 4C, out, residual);
		// permute, proj_out, residual.
		return 39*unit(c, r) + 4*uint64(n*ctxLen*c*4)
	}
	var kept, skips, peakBlock, all uint64
	block := func(out, internals uint64) {
		kept += out
		all += internals
		peakBlock = max(peakBlock, internals)
	}
	levels := len(u.BlockOutChannels)
	r := h
	c0 := u.BlockOutChannels[0]
	kept += unit(c0, r) // conv_in
	skips += unit(c0, r)
	skipCh := []int{c0}
	prev := c0
	for i, c := range u.BlockOutChannels {
		for j := 0; j < u.LayersPerBlock; j++ {
			block(unit(c, r), resnet(prev, c, r))
			if u.DownHasAttn[i] {
				block(unit(c, r), transformer(c, r))
			}
			skips += unit(c, r)
			skipCh = append(skipCh, c)
			prev = c
		}
		if i < levels-1 {
			r /= 2
			kept += unit(c, r)
			skips += unit(c, r)
			skipCh = append(skipCh, c)
		}
	}
	cl := u.BlockOutChannels[levels-1]
	block(unit(cl, r), resnet(cl, cl, r))
	block(unit(cl, r), transformer(cl, r))
	block(unit(cl, r), resnet(cl, cl, r))
	for i := 0; i < levels; i++ {
		level := levels - 1 - i
		c := u.BlockOutChannels[level]
		for j := 0; j <= u.LayersPerBlock; j++ {
			sc := skipCh[len(skipCh)-1]
			skipCh = skipCh[:len(skipCh)-1]
			kept += unit(prev+sc, r) // concat
			block(unit(c, r), resnet(prev+sc, c, r))
			if u.DownHasAttn[level] {
				block(unit(c, r), transformer(c, r))
			}
			prev = c
		}
		if i < levels-1 {
			kept += 2 * unit(c, 2*r) // upsample, conv
			r *= 2
		}
	}
	kept += 3 * unit(c0, r) // norm out, SiLU, conv_out
	// Backward: the skip gradients wait from the up path to the down
	// path; the recomputed block's gradients roughly double its internals
	// at their peak.
	if cfg.NoGradientCheckpointing {
		return kept + all + skips + peakBlock
	}
	return kept + skips + 2*peakBlock
}

// DeviceMemory returns the memory budget of e and where the figure comes
// from: override when > 0, else $INSTRUCTBOOTH_GPU_MEMORY, else for a CPU
// adapter (lavapipe) the system's available memory, else 0 (unknown: the
// trainer then does not refuse up front).
func DeviceMemory(e *gpu.Engine, override uint64) (uint64, string) {
	if override > 0 {
		return override, "configured budget"
	}
	if v := os.Getenv(MemoryEnv); v != "" {
		if n, err := ParseBytes(v); err == nil {
			return n, "$" + MemoryEnv
		}
	}
	if e != nil && e.Info.Type == "cpu" {
		if n := memAvailable(); n > 0 {
			return n, "available system memory, CPU adapter"
		}
	}
	return 0, "unknown; set $" + MemoryEnv
}

// ParseBytes reads "8GiB", "8G", "512MiB", "512M", "1.5GB" or a plain byte
// count (binary multiples throughout).
func ParseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := 1.0
	for _, u := range []struct {
		suf string
		m   float64
	}{{"GIB", 1 << 30}, {"GB", 1 << 30}, {"G", 1 << 30}, {"MIB", 1 << 20}, {"MB", 1 << 20}, {"M", 1 << 20}, {"KIB", 1 << 10}, {"KB", 1 << 10}, {"K", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suf); ok {
			t, mult = strings.TrimSpace(v), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("memory size %q: want e.g. 8GiB or 8000MiB", s)
	}
	return uint64(f * mult), nil
}

// memAvailable reads MemAvailable from /proc/meminfo (0 when unknown).
func memAvailable() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemAvailable:" {
			kb, _ := strconv.ParseUint(fs[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
