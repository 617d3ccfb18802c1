package gpu

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// AdamW is torch.optim.AdamW on the GPU, with optional global-norm gradient
// clipping (torch.nn.utils.clip_grad_norm_) folded into the step: the norm
// and clip factor are computed on the GPU and read by the update kernel, so
// a step needs no readback.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	// MaxGradNorm > 0 clips the global gradient norm to it.
	MaxGradNorm float32

	e      *Engine
	params []*Tensor
	m, v   []*Tensor // [same shape as each param]
	step   int
	acc    *Tensor // [len(params) + 2]: per-tensor sums of squares, norm, clip factor
}

// NewAdamW creates an optimizer over params with PyTorch's defaults except
// lr (betas 0.9/0.999, eps 1e-8, weight decay 0.01). Every param needs a
// Name, unique within the optimizer, for saving state.
func (e *Engine) NewAdamW(params []*Tensor, lr float32) *AdamW {
	o := &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, e: e, params: params}
	seen := map[string]bool{}
	for _, p := range params {
		if p.Name == "" || seen[p.Name] {
			panic(fmt.Sprintf("gpu: AdamW parameter %v needs a unique Name (got %q)", p.shape, p.Name))
		}
		seen[p.Name] = true
		o.m = append(o.m, e.zerosCat(OptimizerState, p.shape...))
		o.v = append(o.v, e.zerosCat(OptimizerState, p.shape...))
	}
	o.acc = e.zerosCat(OptimizerState, len(params)+2)
	return o
}

func (e *Engine) zerosCat(cat Category, shape ...int) *Tensor {
	e.trackOff++
	defer func() { e.trackOff-- }()
	t, err := e.NewTensor(cat, shape...)
	if err != nil {
		panic(err)
	}
	e.fill(t, 0)
	return t
}

// Steps is the number of steps taken.
func (o *AdamW) Steps() int { return o.step }

// slots is the number of per-chunk partial sums gradNorm writes.
func (o *AdamW) slots() int {
	n := 0
	for _, p := range o.params {
		o.e.chunks(p.n, func(int, int) { n++ })
	}
	return n
}

// gradNorm records the kernels that compute the global gradient norm into
// acc[slots] and the clip factor into acc[slots+1]; it returns slots.
func (o *AdamW) gradNorm() int {
	e := o.e
	e.trackOff++
	partials, err := e.NewTensor(Scratch, 256)
	e.trackOff--
	if err != nil {
		panic(err)
	}
	defer partials.Release()
	e.fill(o.acc, 0)
	slot := 0
	for _, p := range o.params {
		g := p.Grad
		e.chunks(p.n, func(from, count int) {
			defer func() { slot++ }()
			if g == nil {
				return // no gradient this step: contributes 0
			}
			groups := min((count+255)/256, 256)
			e.Dispatch(Kernel{File: "gradnorm.wgsl", Entry: "partial"}, Params{count, 0, float32(0), 0}, [3]uint32{uint32(groups), 1, 1}, g.window(from, count), partials.bind())
			e.Dispatch(Kernel{File: "gradnorm.wgsl", Entry: "collect"}, Params{groups, slot, float32(0), 0}, [3]uint32{1, 1, 1}, partials.bind(), o.acc.bind())
		})
	}
	e.Dispatch(Kernel{File: "gradnorm.wgsl", Entry: "finish"}, Params{slot, 0, o.MaxGradNorm, 0}, [3]uint32{1, 1, 1}, partials.bind(), o.acc.bind())
	return slot
}

// Step applies one update to every parameter that has a gradient. Frozen
// parameters and parameters without a gradient are left alone.
func (o *AdamW) Step() {
	e := o.e
	o.step++
	slots := o.gradNorm()
	bc1 := float32(1 - math.Pow(float64(o.Beta1), float64(o.step)))
	bc2 := float32(1 - math.Pow(float64(o.Beta2), float64(o.step)))
	for i, p := range o.params {
		if p.Grad == nil || !p.requiresGrad {
			continue
		}
		g, m, v := p.Grad, o.m[i], o.v[i]
		e.chunks(p.n, func(from, count int) {
			e.Dispatch(Kernel{File: "adamw.wgsl", Entry: "main"},
				Params{count, o.LR, o.Beta1, o.Beta2, o.Eps, o.WeightDecay, bc1, bc2, slots + 1},
				e.Grid1D(count, 256), g.window(from, count), o.acc.bind(), p.window(from, count), m.window(from, count), v.window(from, count))
		})
	}
}

// GradNorm returns the global gradient norm computed by the last Step
// (before clipping). It reads back one value.
func (o *AdamW) GradNorm() (float32, error) {
	b, err := o.e.readBytes(o.acc.buf, o.acc.off+uint64(o.slots())*4, 4)
	if err != nil {
		return 0, err
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(b)), nil
}

// ZeroGrad releases the parameters' gradients.
func (o *AdamW) ZeroGrad() { ZeroGrad(o.params...) }

// Release frees the optimizer state.
func (o *AdamW) Release() {
	for i := range o.m {
		o.m[i].Release()
		o.v[i].Release()
	}
	o.acc.Release()
}

const stateMagic = "IBADAMW1"

// SaveState writes the step count and the first and second moments, keyed
// by parameter name, so training can resume exactly.
func (o *AdamW) SaveState(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(stateMagic)
	binary.Write(bw, binary.LittleEndian, uint64(o.step))
	binary.Write(bw, binary.LittleEndian, uint32(len(o.params)))
	for i, p := range o.params {
		binary.Write(bw, binary.LittleEndian, uint32(len(p.Name)))
		bw.WriteString(p.Name)
		binary.Write(bw, binary.LittleEndian, uint64(p.n))
		for _, t := range []*Tensor{o.m[i], o.v[i]} {
			d, err := t.Read()
			if err != nil {
				return err
			}
			if err := binary.Write(bw, binary.LittleEndian, d); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// LoadState restores what SaveState wrote. The parameters must match by
// name and size; on any mismatch nothing is changed.
func (o *AdamW) LoadState(r io.Reader) error {
	br := bufio.NewReader(r)
	magic := make([]byte, len(stateMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != stateMagic {
		return fmt.Errorf("gpu: AdamW state: not an optimizer state file")
	}
	var step uint64
	var count uint32
	if err := binary.Read(br, binary.LittleEndian, &step); err != nil {
		return fmt.Errorf("gpu: AdamW state: %w", err)
	}
	if err := binary.Read(br, binary.LittleEndian, &count); err != nil {
		return fmt.Errorf("gpu: AdamW state: %w", err)
	}
	if int(count) != len(o.params) {
		return fmt.Errorf("gpu: AdamW state holds %d parameters, the optimizer has %d", count, len(o.params))
	}
	byName := map[string]int{}
	for i, p := range o.params {
		byName[p.Name] = i
	}
	type entry struct {
		i    int
		m, v []float32
	}
	var entries []entry
	for k := 0; k < int(count); k++ {
		var nl uint32
		if err := binary.Read(br, binary.LittleEndian, &nl); err != nil || nl > 1<<16 {
			return fmt.Errorf("gpu: AdamW state: bad name length")
		}
		name := make([]byte, nl)
		if _, err := io.ReadFull(br, name); err != nil {
			return fmt.Errorf("gpu: AdamW state: %w", err)
		}
		i, ok := byName[string(name)]
		if !ok {
			return fmt.Errorf("gpu: AdamW state: unknown parameter %q", name)
		}
		var n uint64
		if err := binary.Read(br, binary.LittleEndian, &n); err != nil {
			return fmt.Errorf("gpu: AdamW state: %w", err)
		}
		if int(n) != o.params[i].n {
			return fmt.Errorf("gpu: AdamW state: parameter %q has %d values, want %d", name, n, o.params[i].n)
		}
		en := entry{i: i, m: make([]float32, n), v: make([]float32, n)}
		if err := binary.Read(br, binary.LittleEndian, en.m); err != nil {
			return fmt.Errorf("gpu: AdamW state: %w", err)
		}
		if err := binary.Read(br, binary.LittleEndian, en.v); err != nil {
			return fmt.Errorf("gpu: AdamW state: %w", err)
		}
		entries = append(entries, en)
	}
	for _, en := range entries {
		if err := o.m[en.i].Write(en.m); err != nil {
			return err
		}
		if err := o.v[en.i].Write(en.v); err != nil {
			return err
		}
	}
	o.step = int(step)
	return nil
}
