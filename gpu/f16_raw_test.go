package gpu

import (
	"encoding/binary"
	"testing"
)

// TestUploadF16Raw uploads little-endian half bytes (odd and even counts)
// and reads the same bits back, and unpacks them like UploadF16's.
func TestUploadF16Raw(t *testing.T) {
	e := engine(t)
	for _, n := range []int{1, 2, 7, 1000, 4097} {
		raw := make([]byte, 2*n)
		bits := make([]uint16, n)
		for i := range bits {
			bits[i] = uint16(i*2654435761>>7) & 0x7bff // finite values
			binary.LittleEndian.PutUint16(raw[2*i:], bits[i])
		}
		h, err := e.UploadF16Raw(raw, n)
		if err != nil {
			t.Fatal(err)
		}
		back, err := h.Bits()
		if err != nil {
			t.Fatal(err)
		}
		for i := range bits {
			if back[i] != bits[i] {
				t.Fatalf("n=%d: value %d: %#04x, want %#04x", n, i, back[i], bits[i])
			}
		}
		ref, err := e.UploadF16(bits)
		if err != nil {
			t.Fatal(err)
		}
		a, b := e.UnpackF16(h).MustRead(), e.UnpackF16(ref).MustRead()
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("n=%d: unpacked value %d: %g, want %g", n, i, a[i], b[i])
			}
		}
		h.Release()
		ref.Release()
	}
	if _, err := e.UploadF16Raw(make([]byte, 6), 2, 2); err == nil {
		t.Error("3 values into [2 2]: no error")
	}
}
