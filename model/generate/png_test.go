package generate

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func testImage() *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	for y := 0; y < 3; y++ {
		for x := 0; x < 5; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(50 * x), uint8(80 * y), 7, 255})
		}
	}
	return img
}

// TestPNG_textChunks writes the generation parameters (Latin-1 and
// non-Latin-1 values, newlines) and reads them back, checks that the image
// still decodes to the same pixels, and that the chunks sit before IEND
// with valid CRCs.
func TestPNG_textChunks(t *testing.T) {
	p := Params{Prompt: "a photo of sks dog, café", Negative: "blurry\nlow quality, 猫", Steps: 25, Guidance: 7.5,
		Seed: 18446744073709551615, Width: 512, Height: 768, Sampler: "dpm++2m"}
	meta := Metadata(p, "sd-tiny")
	var buf bytes.Buffer
	img := testImage()
	if err := EncodePNG(&buf, img, meta); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPNGText(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		KeyPrompt: "a photo of sks dog, café", KeyNegative: "blurry\nlow quality, 猫", KeySeed: "18446744073709551615",
		KeySteps: "25", KeyGuidance: "7.5", KeySampler: "dpm++2m", KeySize: "512x768", KeyModel: "sd-tiny",
		KeyParameters: "a photo of sks dog, café\nNegative prompt: blurry\nlow quality, 猫\nSteps: 25, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 18446744073709551615, Size: 512x768, Model: sd-tiny",
	}
	seen := map[string]string{}
	for _, e := range got {
		seen[e.Key] = e.Value
	}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("text %q = %q, want %q", k, seen[k], v)
		}
	}
	// Chunk types in order: the café prompt is Latin-1 (tEXt), the negative
	// prompt needs iTXt.
	types := chunkTypes(t, buf.Bytes())
	if types[0] != "IHDR" || types[len(types)-1] != "IEND" {
		t.Fatalf("chunk order %v", types)
	}
	var text []string
	for _, ty := range types {
		if ty == "tEXt" || ty == "iTXt" {
			text = append(text, ty)
		}
	}
	if len(text) != len(meta) || text[0] != "tEXt" || text[1] != "iTXt" {
		t.Errorf("text chunks %v", text)
	}
	dec, err := png.Decode(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 3; y++ {
		for x := 0; x < 5; x++ {
			if a, b := color.NRGBAModel.Convert(dec.At(x, y)), img.At(x, y); a != b {
				t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, a, b)
			}
		}
	}
	// A corrupted byte inside a text chunk is caught by its CRC.
	bad := append([]byte(nil), buf.Bytes()...)
	i := bytes.Index(bad, []byte("tEXtprompt"))
	bad[i+12] ^= 1
	if _, err := ReadPNGText(bytes.NewReader(bad)); err == nil {
		t.Error("corrupted chunk accepted")
	}
	if err := EncodePNG(&buf, img, []TextEntry{{"", "x"}}); err == nil {
		t.Error("empty keyword accepted")
	}
}

// chunkTypes walks the chunk list and checks every CRC independently of
// ReadPNGText.
func chunkTypes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for i := 8; i < len(b); {
		n := int(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		if crc32.ChecksumIEEE(b[i+4:i+8+n]) != binary.BigEndian.Uint32(b[i+8+n:]) {
			t.Fatalf("bad CRC in %s", typ)
		}
		out = append(out, typ)
		i += 12 + n
	}
	return out
}

// TestToRGB maps [-1, 1] to [0, 255] with clamping, in NCHW order.
func TestToRGB(t *testing.T) {
	// One 1x3 image: R = (-2, -1, 0), G = (0.5, 1, 3), B = (-0.5, 0.999, 0.002).
	vals := []float32{-2, -1, 0, 0.5, 1, 3, -0.5, 0.999, 0.002}
	imgs, err := ToRGB(vals, 1, 3, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []color.NRGBA{{0, 191, 64, 255}, {0, 255, 255, 255}, {128, 255, 128, 255}}
	for x, w := range want {
		if got := imgs[0].NRGBAAt(x, 0); got != w {
			t.Errorf("pixel %d = %v, want %v", x, got, w)
		}
	}
	if _, err := ToRGB(vals, 1, 4, 1, 2); err == nil {
		t.Error("4 channels accepted")
	}
}
