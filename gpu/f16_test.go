package gpu

import (
	"math"
	"testing"

	"github.com/x448/float16"
)

// TestUnpackF16All unpacks every one of the 65536 binary16 bit patterns
// (odd count: the last word's high half is unused) and compares with
// x448/float16's conversion.
func TestUnpackF16All(t *testing.T) {
	e := engine(t)
	bits := make([]uint16, 65537)
	for i := range bits {
		bits[i] = uint16(i)
	}
	h, err := e.UploadF16(bits)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	x := e.UnpackF16(h, 65537)
	defer x.Release()
	got := x.MustRead()
	bad := 0
	for i, b := range bits {
		want := float16.Frombits(b).Float32()
		ok := got[i] == want && math.Signbit(float64(got[i])) == math.Signbit(float64(want))
		if math.IsNaN(float64(want)) {
			ok = math.IsNaN(float64(got[i]))
		}
		if !ok {
			if bad < 10 {
				t.Errorf("bits %#04x: got %g, want %g", b, got[i], want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d values differ", bad, len(bits))
	}
	if back, err := h.Bits(); err != nil || len(back) != len(bits) || back[12345] != 12345 || back[65536] != 0 {
		t.Fatalf("Bits readback: err %v, %d values", err, len(back))
	}
}

// TestPackF16 packs f32 values across the f16 range (normals, subnormals,
// halfway cases, odd count) and compares with x448/float16's round to
// nearest even; then round-trips through UnpackF16.
func TestPackF16(t *testing.T) {
	e := engine(t)
	r, _ := seeded(t)
	var vals []float32
	for i := 0; i < 3000; i++ {
		exp := r.Float64()*40 - 25 // 2^-25 .. 2^15: subnormals to the top binade
		v := float32(math.Pow(2, exp) * (1 + r.Float64()))
		if v > 65504 {
			v = 65504
		}
		if r.Intn(2) == 0 {
			v = -v
		}
		vals = append(vals, v)
	}
	// Exact ties between two f16 values and exactly representable values.
	for _, b := range []uint16{0x3c00, 0x3c01, 0x0001, 0x03ff, 0x7bff, 0x8400} {
		lo := float16.Frombits(b).Float32()
		hi := float16.Frombits(b + 1).Float32()
		vals = append(vals, lo, (lo+hi)/2)
	}
	vals = append(vals, 0, float32(math.Copysign(0, -1)), 1e-10) // odd count
	x := e.FromSlice(vals, len(vals))
	defer x.Release()
	h := e.PackF16(x)
	defer h.Release()
	got, err := h.Bits()
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, v := range vals {
		if want := float16.Fromfloat32(v).Bits(); got[i] != want {
			if bad < 10 {
				t.Errorf("%g: packed %#04x, want %#04x", v, got[i], want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d values differ from round to nearest even", bad, len(vals))
	}
	y := e.UnpackF16(h, len(vals))
	defer y.Release()
	for i, v := range y.MustRead() {
		if want := float16.Fromfloat32(vals[i]).Float32(); v != want {
			t.Fatalf("round trip of %g: %g, want %g", vals[i], v, want)
		}
	}
	c, err := e.F16FromFloat32(vals[:5], 5)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	cb, _ := c.Bits()
	for i := range cb {
		if cb[i] != got[i] {
			t.Fatalf("F16FromFloat32 and PackF16 disagree at %d", i)
		}
	}
}
