package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// Tensor is a row-major f32 array on the GPU. A tensor produced by an op
// while gradients are recorded remembers the op (its node) so Backward can
// reach its inputs. Tensors share buffers with their reshaped views; the
// buffer returns to the pool when its last tensor is released.
type Tensor struct {
	e     *Engine
	buf   *buffer
	off   uint64 // byte offset into buf (multiple of 256 for bindable views)
	shape []int
	n     int

	// Grad is the accumulated gradient of a tensor that requires it.
	Grad         *Tensor
	requiresGrad bool
	node         *node
	Name         string
	released     bool
	pins         int  // recorded nodes that use this tensor
	orphan       bool // its scope closed while pinned: free at ResetTape
}

// Shape returns the tensor's dimensions (do not modify).
func (t *Tensor) Shape() []int { return t.shape }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.n }

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Bytes is the tensor's size in bytes.
func (t *Tensor) Bytes() uint64 { return uint64(t.n) * 4 }

// RequiresGrad reports whether gradients flow to this tensor.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// SetRequiresGrad marks a leaf (parameter) as trainable or frozen.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor { t.requiresGrad = v; return t }

func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor%s%v", map[bool]string{true: "(grad)", false: ""}[t.requiresGrad], t.shape)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("gpu: negative dimension in %v", shape))
		}
		n *= d
	}
	return n
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// New allocates an uninitialised tensor of the given category.
func (e *Engine) NewTensor(cat Category, shape ...int) (*Tensor, error) {
	n := numel(shape)
	b, err := e.pool.get(uint64(n)*4, cat)
	if err != nil {
		return nil, err
	}
	t := &Tensor{e: e, buf: b, shape: append([]int(nil), shape...), n: n}
	e.track(t)
	return t, nil
}

// alloc is NewTensor for op outputs; allocation failure is a panic caught by
// the op's caller through Engine.Err-free paths (out of memory is fatal
// mid-graph).
func (e *Engine) alloc(shape ...int) *Tensor {
	t, err := e.NewTensor(Activations, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// Zeros returns a zero-filled tensor.
func (e *Engine) Zeros(shape ...int) *Tensor {
	t := e.alloc(shape...)
	e.fill(t, 0)
	return t
}

// Full returns a tensor filled with v.
func (e *Engine) Full(v float32, shape ...int) *Tensor {
	t := e.alloc(shape...)
	e.fill(t, v)
	return t
}

// FromSlice uploads data as a tensor of the given shape (Activations).
func (e *Engine) FromSlice(data []float32, shape ...int) *Tensor {
	t, err := e.Upload(Activations, data, shape...)
	if err != nil {
		panic(err)
	}
	return t
}

// Param uploads data as a trainable weight.
func (e *Engine) Param(name string, data []float32, shape ...int) *Tensor {
	t, err := e.Upload(Weights, data, shape...)
	if err != nil {
		panic(err)
	}
	t.Name = name
	t.requiresGrad = true
	return t
}

// Upload copies data into a new tensor of category cat.
func (e *Engine) Upload(cat Category, data []float32, shape ...int) (*Tensor, error) {
	if numel(shape) != len(data) {
		return nil, fmt.Errorf("gpu: %d values do not fill shape %v", len(data), shape)
	}
	t, err := e.NewTensor(cat, shape...)
	if err != nil {
		return nil, err
	}
	if err := t.Write(data); err != nil {
		t.Release()
		return nil, err
	}
	return t, nil
}

// Write replaces the tensor's contents. Recorded work is submitted first so
// the write lands after every earlier use of the buffer.
func (t *Tensor) Write(data []float32) error {
	if len(data) != t.n {
		return fmt.Errorf("gpu: writing %d values into %v", len(data), t.shape)
	}
	e := t.e
	if err := e.rec.flush(); err != nil {
		return err
	}
	if t.n == 0 {
		return nil
	}
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	if err := e.queue.WriteBuffer(t.buf.b, t.off, b); err != nil {
		return e.fail(fmt.Errorf("gpu: uploading %v: %w", t.shape, err))
	}
	return nil
}

// Read submits pending work and copies the tensor back to the CPU.
func (t *Tensor) Read() ([]float32, error) {
	if t.released {
		return nil, fmt.Errorf("gpu: reading released tensor %v %s", t.shape, t.Name)
	}
	b, err := t.e.readBytes(t.buf, t.off, t.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// MustRead is Read for tests and tools; it panics on error.
func (t *Tensor) MustRead() []float32 {
	v, err := t.Read()
	if err != nil {
		panic(err)
	}
	return v
}

// Item reads a one-element tensor.
func (t *Tensor) Item() (float32, error) {
	if t.n != 1 {
		return 0, fmt.Errorf("gpu: Item on a tensor of shape %v", t.shape)
	}
	v, err := t.Read()
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// readBytes copies size bytes at off of b to the CPU through a staging
// buffer; it is the only place the engine waits for the GPU.
func (e *Engine) readBytes(b *buffer, off, size uint64) ([]byte, error) {
	if e.lost != nil {
		return nil, e.lost
	}
	if size == 0 {
		return nil, nil
	}
	padded := (size + 3) &^ 3
	st, err := e.dev.CreateBuffer(&wgpu.BufferDescriptor{Size: padded, Usage: wgpu.BufferUsage_MapRead | wgpu.BufferUsage_CopyDst})
	if err != nil {
		return nil, e.fail(fmt.Errorf("gpu: staging buffer of %s: %w", fmtBytes(padded), err))
	}
	defer st.Release()
	defer st.Destroy()
	enc, err := e.rec.encoder()
	if err != nil {
		return nil, err
	}
	if err := e.rec.endPass(); err != nil {
		return nil, err
	}
	if err := enc.CopyBufferToBuffer(b.b, off, st, 0, padded); err != nil {
		return nil, e.fail(fmt.Errorf("gpu: copy for readback: %w", err))
	}
	if err := e.rec.flush(); err != nil {
		return nil, err
	}
	if err := mapRead(e.dev, e.queue, e.rec.lastSub, st, 0, padded, e.slot); err != nil {
		return nil, e.fail(err)
	}
	out := make([]byte, size)
	copy(out, st.GetMappedRange(0, uint(padded)))
	if err := st.Unmap(); err != nil {
		return nil, e.fail(fmt.Errorf("gpu: unmap after readback: %w", err))
	}
	return out, nil
}

// Release returns the tensor's buffer to the pool once no view uses it.
// Using the tensor afterwards panics at its next dispatch.
func (t *Tensor) Release() {
	if t == nil || t.released {
		return
	}
	t.released = true
	t.buf.refs--
	if t.buf.refs == 0 {
		t.e.pool.put(t.buf)
	}
	if t.Grad != nil {
		t.Grad.Release()
		t.Grad = nil
	}
}

// Reshape returns a view with a new shape and the same elements; one
// dimension may be -1.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	shape = append([]int(nil), shape...)
	neg := -1
	prod := 1
	for i, d := range shape {
		if d == -1 {
			if neg >= 0 {
				panic("gpu: Reshape with two -1 dimensions")
			}
			neg = i
			continue
		}
		prod *= d
	}
	if neg >= 0 && prod > 0 {
		shape[neg] = t.n / prod
	}
	if numel(shape) != t.n {
		panic(fmt.Sprintf("gpu: cannot reshape %v to %v", t.shape, shape))
	}
	v := t.view(shape)
	if t.requiresGrad && t.e.recording() {
		src := t
		t.e.record(v, []*Tensor{t}, func(g *Tensor) {
			src.accumulate(g.Reshape(src.shape...))
		})
	}
	return v
}

func (t *Tensor) view(shape []int) *Tensor {
	t.buf.refs++
	v := &Tensor{e: t.e, buf: t.buf, off: t.off, shape: shape, n: t.n, requiresGrad: t.requiresGrad}
	t.e.track(v)
	return v
}

// bind returns the whole tensor as a binding.
func (t *Tensor) bind() Binding {
	if t.released {
		panic(fmt.Sprintf("gpu: use of released tensor %v %s", t.shape, t.Name))
	}
	sz := t.Bytes()
	if sz == 0 {
		sz = 4
	}
	return Binding{buf: t.buf, off: t.off, size: sz}
}

// window binds elements [from, from+count) of the tensor; from must be a
// multiple of 64 so the offset keeps the 256-byte alignment.
func (t *Tensor) window(from, count int) Binding {
	b := t.bind()
	b.off += uint64(from) * 4
	b.size = uint64(count) * 4
	if b.size == 0 {
		b.size = 4
	}
	return b
}

func shapeStr(s []int) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(p, ", ") + "]"
}
