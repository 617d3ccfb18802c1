package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/instructbooth/instructbooth/shaders"
	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// pipeline is a compiled compute pipeline and the bind group layout that its
// entry point uses (derived by wgpu from the shader: binding 0 is the
// uniform parameter block, bindings 1.. are storage buffers in the order the
// Go side passes them).
type pipeline struct {
	p      *wgpu.ComputePipeline
	layout *wgpu.BindGroupLayout
	name   string
}

func (p *pipeline) release() {
	p.layout.Release()
	p.p.Release()
}

// Kernel names one entry point of one shader file, specialised by constants
// that are pasted in front of the source as `const NAME: TYPE = VALUE;`
// lines (this wgpu does not wire WGSL override constants).
type Kernel struct {
	File, Entry string
	Consts      string // e.g. "const TM: u32 = 4u;"; part of the cache key
}

func (k Kernel) key() string { return k.File + "|" + k.Entry + "|" + k.Consts }

// pipelineFor compiles (once) and returns the pipeline for k.
func (e *Engine) pipelineFor(k Kernel) (*pipeline, error) {
	if p, ok := e.pipelines[k.key()]; ok {
		return p, nil
	}
	src, err := shaders.Source(k.File)
	if err != nil {
		return nil, err
	}
	code := k.Consts + "\n" + src
	mod, err := e.dev.CreateShaderModule(&wgpu.ShaderModuleDescriptor{
		Label: k.File, WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: code},
	})
	if err != nil {
		return nil, fmt.Errorf("gpu: compiling shader %s: %w", k.File, err)
	}
	defer mod.Release()
	cp, err := e.dev.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{
		Label:   k.File + ":" + k.Entry,
		Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: k.Entry},
	})
	if err != nil {
		return nil, fmt.Errorf("gpu: creating pipeline %s:%s: %w", k.File, k.Entry, err)
	}
	p := &pipeline{p: cp, layout: cp.GetBindGroupLayout(0), name: k.File + ":" + k.Entry}
	e.pipelines[k.key()] = p
	return p, nil
}

// Params packs a kernel's uniform block: each value becomes 4 bytes
// (int/uint32 as u32, int32 as i32, float32/float64 as f32), in order.
type Params []any

func (ps Params) bytes() []byte {
	out := make([]byte, 0, (len(ps)*4+15)&^15)
	for _, v := range ps {
		var u uint32
		switch x := v.(type) {
		case int:
			u = uint32(x)
		case uint32:
			u = x
		case int32:
			u = uint32(x)
		case float32:
			u = math.Float32bits(x)
		case float64:
			u = math.Float32bits(float32(x))
		case bool:
			if x {
				u = 1
			}
		default:
			panic(fmt.Sprintf("gpu: unsupported param type %T", v))
		}
		out = binary.LittleEndian.AppendUint32(out, u)
	}
	for len(out)%16 != 0 || len(out) == 0 {
		out = append(out, 0)
	}
	return out
}

// Binding is a byte range of a buffer bound to one storage slot.
type Binding struct {
	buf       *buffer
	off, size uint64
}

const uniformArena = 1 << 20 // bytes of parameter blocks per submit

// recorder batches dispatches into one command encoder and compute pass;
// flush submits them all at once.
type recorder struct {
	e        *Engine
	enc      *wgpu.CommandEncoder
	pass     *wgpu.ComputePassEncoder
	uniform  *wgpu.Buffer
	arena    []byte
	groups   []*wgpu.BindGroup
	n        int // dispatches recorded since the last submit
	lastSub  wgpu.SubmissionIndex
	submits  int
	dispatch int
	align    uint64
}

func newRecorder(e *Engine) *recorder {
	r := &recorder{e: e, align: uint64(e.Limits.MinUniformBufferOffsetAlignment)}
	if r.align < 16 {
		r.align = 16
	}
	var err error
	r.uniform, err = e.dev.CreateBuffer(&wgpu.BufferDescriptor{
		Size: uniformArena, Usage: wgpu.BufferUsage_Uniform | wgpu.BufferUsage_CopyDst,
	})
	if err != nil {
		panic(fmt.Sprintf("gpu: creating the uniform arena: %v", err))
	}
	return r
}

func (r *recorder) release() {
	r.endPass()
	if r.enc != nil {
		r.enc.Release()
		r.enc = nil
	}
	r.uniform.Release()
}

func (r *recorder) encoder() (*wgpu.CommandEncoder, error) {
	if r.enc == nil {
		enc, err := r.e.dev.CreateCommandEncoder(nil)
		if err != nil {
			return nil, r.e.fail(fmt.Errorf("gpu: creating a command encoder: %w", err))
		}
		r.enc = enc
	}
	return r.enc, nil
}

func (r *recorder) endPass() error {
	if r.pass == nil {
		return nil
	}
	err := r.pass.End()
	r.pass.Release()
	r.pass = nil
	if err != nil {
		return r.e.fail(fmt.Errorf("gpu: ending a compute pass: %w", err))
	}
	return nil
}

// flush submits everything recorded so far.
func (r *recorder) flush() error {
	if r.e.lost != nil {
		return r.e.lost
	}
	if r.enc == nil {
		return nil
	}
	if err := r.endPass(); err != nil {
		return err
	}
	if len(r.arena) > 0 {
		if err := r.e.queue.WriteBuffer(r.uniform, 0, r.arena); err != nil {
			return r.e.fail(fmt.Errorf("gpu: writing kernel parameters: %w", err))
		}
	}
	cb, err := r.enc.Finish(nil)
	r.enc.Release()
	r.enc = nil
	if err != nil {
		return r.e.fail(fmt.Errorf("gpu: finishing commands (%d dispatches): %w", r.n, err))
	}
	r.lastSub = r.e.queue.Submit(cb)
	cb.Release()
	// Let wgpu retire finished submissions and free their resources
	// without blocking.
	r.e.dev.Poll(false, nil)
	for _, g := range r.groups {
		g.Release()
	}
	r.groups = r.groups[:0]
	r.arena = r.arena[:0]
	r.n = 0
	r.submits++
	return nil
}

// fail records the first fatal error; a lost device is reported as
// ErrDeviceLost.
func (e *Engine) fail(err error) error {
	if e.lost == nil {
		if strings.Contains(strings.ToLower(err.Error()), "lost") {
			err = fmt.Errorf("%w: %v", ErrDeviceLost, err)
		}
		e.lost = err
	}
	return e.lost
}

// Dispatch records one kernel launch with workgroup counts (x, y, z) over
// the given storage bindings. It panics on programming errors (unknown
// kernel, bad bindings) and records GPU-side failures for the next Sync.
func (e *Engine) Dispatch(k Kernel, params Params, groups [3]uint32, binds ...Binding) {
	if e.lost != nil {
		return
	}
	for i, g := range groups {
		if g > e.Limits.MaxComputeWorkgroupsPerDimension {
			panic(fmt.Sprintf("gpu: %s: %d workgroups in dimension %d exceeds the limit %d", k.File, g, i, e.Limits.MaxComputeWorkgroupsPerDimension))
		}
		if g == 0 {
			return
		}
	}
	p, err := e.pipelineFor(k)
	if err != nil {
		panic(err)
	}
	r := e.rec
	pb := params.bytes()
	if uint64(len(r.arena))+uint64(len(pb))+r.align > uniformArena {
		if err := r.flush(); err != nil {
			return
		}
	}
	uoff := (uint64(len(r.arena)) + r.align - 1) / r.align * r.align
	for uint64(len(r.arena)) < uoff {
		r.arena = append(r.arena, 0)
	}
	r.arena = append(r.arena, pb...)
	entries := make([]wgpu.BindGroupEntry, 0, len(binds)+1)
	entries = append(entries, wgpu.BindGroupEntry{Binding: 0, Buffer: r.uniform, Offset: uoff, Size: uint64(len(pb))})
	for i, b := range binds {
		if b.buf == nil || b.buf.b == nil {
			panic(fmt.Sprintf("gpu: %s: binding %d uses a released tensor", p.name, i+1))
		}
		if b.size > e.maxBinding {
			panic(fmt.Sprintf("gpu: %s: binding %d covers %s, over the %s binding limit", p.name, i+1, fmtBytes(b.size), fmtBytes(e.maxBinding)))
		}
		entries = append(entries, wgpu.BindGroupEntry{Binding: uint32(i + 1), Buffer: b.buf.b, Offset: b.off, Size: b.size})
	}
	bg, err := e.dev.CreateBindGroup(&wgpu.BindGroupDescriptor{Layout: p.layout, Entries: entries})
	if err != nil {
		panic(fmt.Sprintf("gpu: %s: bind group: %v", p.name, err))
	}
	r.groups = append(r.groups, bg)
	if _, err := r.encoder(); err != nil {
		return
	}
	if r.pass == nil {
		r.pass = r.enc.BeginComputePass(nil)
	}
	r.pass.SetPipeline(p.p)
	r.pass.SetBindGroup(0, bg, nil)
	r.pass.DispatchWorkgroups(groups[0], groups[1], groups[2])
	r.n++
	r.dispatch++
	if r.n >= 2048 {
		r.flush()
	}
}

// Grid1D returns workgroup counts covering n threads in workgroups of wg,
// folding into y past the per-dimension limit. Shaders recover the linear
// index as gid.x + gid.y * num_workgroups.x * wg.
func (e *Engine) Grid1D(n, wg int) [3]uint32 {
	g := (n + wg - 1) / wg
	if g == 0 {
		return [3]uint32{0, 1, 1}
	}
	max := int(e.Limits.MaxComputeWorkgroupsPerDimension)
	if g <= max {
		return [3]uint32{uint32(g), 1, 1}
	}
	y := (g + max - 1) / max
	x := (g + y - 1) / y
	return [3]uint32{uint32(x), uint32(y), 1}
}

// Counters reports how many dispatches and submits the engine has made.
func (e *Engine) Counters() (dispatches, submits int) { return e.rec.dispatch, e.rec.submits }
