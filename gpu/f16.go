package gpu

import (
	"encoding/binary"
	"fmt"

	"github.com/x448/float16"
)

// Half-precision weight storage. Shaders: shaders/f16_unpack.wgsl,
// shaders/f16_pack.wgsl. These are storage conversions, not ops of the
// graph: nothing is recorded on the tape and no gradient flows through
// them (train on the f32 tensor UnpackF16 returns).

// F16 holds IEEE binary16 values in a GPU storage buffer, packed two per
// u32 word: value 2i in the low 16 bits of word i, value 2i+1 in the high
// 16 bits (the order of WGSL's pack2x16float/unpack2x16float, and of a
// little-endian []uint16). It takes half the memory of f32. F16 is not a
// Tensor: Scopes do not track it; Release it when done.
type F16 struct {
	e        *Engine
	buf      *buffer
	shape    []int
	n        int
	released bool
}

// UploadF16 copies raw binary16 values (float16.Float16.Bits()) into a new
// F16 of the given shape (no shape: [len(bits)]), accounted as Weights.
func (e *Engine) UploadF16(bits []uint16, shape ...int) (*F16, error) {
	if len(shape) == 0 {
		shape = []int{len(bits)}
	}
	if numel(shape) != len(bits) {
		return nil, fmt.Errorf("gpu: %d half values do not fill shape %v", len(bits), shape)
	}
	words := make([]uint32, (len(bits)+1)/2)
	for i, b := range bits {
		words[i/2] |= uint32(b) << (16 * (i % 2))
	}
	if err := e.lost; err != nil {
		return nil, err
	}
	buf := e.uploadWords(words, Weights)
	if err := e.lost; err != nil {
		e.pool.put(buf)
		return nil, err
	}
	return &F16{e: e, buf: buf, shape: append([]int(nil), shape...), n: len(bits)}, nil
}

// UploadF16Raw copies little-endian binary16 data (2 bytes per value, the
// layout of a safetensors F16 tensor, which is already the packed word
// layout) into a new F16 of the given shape (no shape: [len(raw)/2]),
// accounted as Weights. It skips UploadF16's per-value repacking.
func (e *Engine) UploadF16Raw(raw []byte, shape ...int) (*F16, error) {
	n := len(raw) / 2
	if len(raw)%2 != 0 {
		return nil, fmt.Errorf("gpu: %d bytes of half values", len(raw))
	}
	if len(shape) == 0 {
		shape = []int{n}
	}
	if numel(shape) != n {
		return nil, fmt.Errorf("gpu: %d half values do not fill shape %v", n, shape)
	}
	if err := e.lost; err != nil {
		return nil, err
	}
	buf, err := e.pool.get(uint64((n+1)/2)*4, Weights)
	if err != nil {
		return nil, err
	}
	if err := e.rec.flush(); err != nil {
		e.pool.put(buf)
		return nil, err
	}
	if len(raw)%4 != 0 {
		raw = append(raw[:len(raw):len(raw)], 0, 0) // WriteBuffer takes whole words
	}
	if len(raw) > 0 {
		if err := e.queue.WriteBuffer(buf.b, 0, raw); err != nil {
			e.pool.put(buf)
			return nil, e.fail(fmt.Errorf("gpu: uploading %d half values: %w", n, err))
		}
	}
	return &F16{e: e, buf: buf, shape: append([]int(nil), shape...), n: n}, nil
}

// F16FromFloat32 converts data to binary16 on the CPU (x448/float16:
// round to nearest even, overflow to infinity) and uploads it.
func (e *Engine) F16FromFloat32(data []float32, shape ...int) (*F16, error) {
	bits := make([]uint16, len(data))
	for i, v := range data {
		bits[i] = float16.Fromfloat32(v).Bits()
	}
	return e.UploadF16(bits, shape...)
}

// Shape returns the dimensions (do not modify).
func (h *F16) Shape() []int { return h.shape }

// Len is the number of half values.
func (h *F16) Len() int { return h.n }

// Bytes is the size of the packed data (4 bytes per pair).
func (h *F16) Bytes() uint64 { return uint64((h.n+1)/2) * 4 }

// Release returns the buffer to the pool.
func (h *F16) Release() {
	if h == nil || h.released {
		return
	}
	h.released = true
	h.e.pool.put(h.buf)
}

// Bits submits pending work and reads the raw binary16 values back.
func (h *F16) Bits() ([]uint16, error) {
	b, err := h.e.readBytes(h.buf, 0, h.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]uint16, h.n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out, nil
}

// words binds the packed words holding values [from, from+count); from is
// even.
func (h *F16) words(from, count int) Binding {
	if h.released {
		panic(fmt.Sprintf("gpu: use of released F16 %v", h.shape))
	}
	return Binding{buf: h.buf, off: uint64(from/2) * 4, size: max(4, uint64((count+1)/2)*4)}
}

// f16Chunks splits n values into windows that fit one binding with starts
// that are multiples of 128 values: 512 bytes of f32 and 256 bytes of
// packed words, both on the offset grid.
func (e *Engine) f16Chunks(n int, f func(from, count int)) { chunksOf(n, e.maxElems(), 128, f) }

// UnpackF16 converts h to a new f32 tensor (accounted as Weights) of h's
// shape, or of shape if given (same number of elements). Exact: every
// binary16 value is an f32 value.
func (e *Engine) UnpackF16(h *F16, shape ...int) *Tensor {
	if len(shape) == 0 {
		shape = h.shape
	}
	if numel(shape) != h.n {
		panic(fmt.Sprintf("gpu: UnpackF16 of %d values into shape %v", h.n, shape))
	}
	out, err := e.NewTensor(Weights, shape...)
	if err != nil {
		panic(err)
	}
	e.f16Chunks(h.n, func(from, count int) {
		words := (count + 1) / 2
		e.Dispatch(Kernel{File: "f16_unpack.wgsl", Entry: "main"}, Params{count, words}, e.Grid1D(words, 256),
			h.words(from, count), out.window(from, count))
	})
	return out
}

// PackF16 converts x to binary16 on the GPU (pack2x16float) into a new F16
// of x's shape. WGSL lets the implementation round either way (Mesa's
// lavapipe rounds to nearest even, like F16FromFloat32) and leaves values
// beyond +-65504 indeterminate: clamp first if x may hold them.
func (e *Engine) PackF16(x *Tensor) *F16 {
	buf, err := e.pool.get(uint64((x.n+1)/2)*4, Weights)
	if err != nil {
		panic(err)
	}
	h := &F16{e: e, buf: buf, shape: append([]int(nil), x.shape...), n: x.n}
	e.f16Chunks(x.n, func(from, count int) {
		words := (count + 1) / 2
		e.Dispatch(Kernel{File: "f16_pack.wgsl", Entry: "main"}, Params{count, words}, e.Grid1D(words, 256),
			x.window(from, count), h.words(from, count))
	})
	return h
}
