package gpu

import (
	"fmt"
)

// Helpers shared by the elementwise, reduction and indexing ops
// (op_unary.go, op_geglu.go, op_reduce.go, op_gather.go, op_permute.go,
// f16.go): windows that start off the 256-byte grid, chunking with other
// alignments, and the WGSL library that the GELU family pastes in front of
// its shaders.

// span binds elements [from, from+count) of t starting at the nearest
// 256-byte boundary at or before from (t's own offset is on that grid). It
// returns the binding and from's element offset inside it, so a kernel
// reads element from+k at index delta+k. The caller keeps delta+count
// within one binding.
func (t *Tensor) span(from, count int) (b Binding, delta int) {
	if t.off%256 != 0 {
		panic(fmt.Sprintf("gpu: tensor %v at byte offset %d is not bindable in windows", t.shape, t.off))
	}
	start := from &^ 63
	b = t.bind()
	b.off += uint64(start) * 4
	b.size = uint64(from+count-start) * 4
	if b.size == 0 {
		b.size = 4
	}
	return b, from - start
}

// maxElems is the most f32 elements one binding may cover, a multiple of
// 64.
func (e *Engine) maxElems() int {
	m := int(e.maxBinding / 4)
	return m - m%64
}

// chunksOf calls f over [0, n) in windows of at most lim elements whose
// starts are multiples of align (lim is rounded down to a multiple of
// align and must stay positive). n == 0 still makes one call f(0, 0) so
// callers need no special case (a dispatch over 0 threads is skipped).
func chunksOf(n, lim, align int, f func(from, count int)) {
	lim -= lim % align
	if lim <= 0 {
		panic(fmt.Sprintf("gpu: chunks of at most %d elements cannot be aligned to %d", lim, align))
	}
	if n <= lim {
		f(0, n)
		return
	}
	for from := 0; from < n; from += lim {
		f(from, min(lim, n-from))
	}
}

// nextPow2 returns the least power of two >= n (1 for n <= 1).
func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// prod is the product of dims (1 for none).
func prod(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}
