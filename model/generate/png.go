package generate

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"unicode/utf8"
)

// Text chunk keywords written by Metadata.
const (
	KeyPrompt     = "prompt"
	KeyNegative   = "negative_prompt"
	KeySeed       = "seed"
	KeySteps      = "steps"
	KeyGuidance   = "guidance"
	KeySampler    = "sampler"
	KeySize       = "size"
	KeyModel      = "model"
	KeySoftware   = "Software"
	KeyParameters = "parameters" // one summary line set as AUTOMATIC1111's web UI writes it, which many tools read
)

// TextEntry is one PNG text chunk.
type TextEntry struct{ Key, Value string }

// Metadata lists the text chunks describing an image made with p by the
// model named model.
func Metadata(p Params, model string) []TextEntry {
	size := fmt.Sprintf("%dx%d", p.Width, p.Height)
	g := strconv.FormatFloat(float64(p.Guidance), 'g', -1, 32)
	summary := p.Prompt
	if p.Negative != "" {
		summary += "\nNegative prompt: " + p.Negative
	}
	summary += fmt.Sprintf("\nSteps: %d, Sampler: %s, CFG scale: %s, Seed: %d, Size: %s, Model: %s",
		p.Steps, SamplerLabel(p.Sampler), g, p.Seed, size, model)
	return []TextEntry{
		{KeyPrompt, p.Prompt},
		{KeyNegative, p.Negative},
		{KeySeed, strconv.FormatUint(p.Seed, 10)},
		{KeySteps, strconv.Itoa(p.Steps)},
		{KeyGuidance, g},
		{KeySampler, p.Sampler},
		{KeySize, size},
		{KeyModel, model},
		{KeySoftware, "InstructBooth"},
		{KeyParameters, summary},
	}
}

// EncodePNG writes img as a PNG with the given text chunks placed before
// IEND. Values that Latin-1 can spell go in tEXt chunks; others in
// uncompressed iTXt chunks (UTF-8). Keywords must be 1 to 79 printable
// Latin-1 characters without leading, trailing or double spaces.
func EncodePNG(w io.Writer, img image.Image, text []TextEntry) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	b := buf.Bytes()
	// image/png ends the stream with the 12-byte IEND chunk.
	iend := len(b) - 12
	if iend < 8 || string(b[iend+4:iend+8]) != "IEND" {
		return fmt.Errorf("png: encoder output does not end with IEND")
	}
	var chunks bytes.Buffer
	for _, t := range text {
		if err := checkKeyword(t.Key); err != nil {
			return err
		}
		if lat, ok := latin1(t.Value); ok {
			writeChunk(&chunks, "tEXt", append(append([]byte(t.Key), 0), lat...))
			continue
		}
		if !utf8.ValidString(t.Value) {
			return fmt.Errorf("png: text %q is not valid UTF-8", t.Key)
		}
		// keyword 0, compression flag 0, method 0, language "" 0, translated keyword "" 0, text
		d := append([]byte(t.Key), 0, 0, 0, 0, 0)
		writeChunk(&chunks, "iTXt", append(d, t.Value...))
	}
	for _, part := range [][]byte{b[:iend], chunks.Bytes(), b[iend:]} {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return nil
}

// WritePNG writes the PNG to path through a temporary file in the same
// folder, renamed into place when complete.
func WritePNG(path string, img image.Image, text []TextEntry) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".ib-*.png")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o644)
	if err == nil {
		err = EncodePNG(f, img, text)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeChunk appends one PNG chunk: data length (big-endian), type, data,
// and the CRC-32 (IEEE) of type and data.
func writeChunk(w *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	w.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	w.WriteString(typ)
	w.Write(data)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	w.Write(n[:])
}

func checkKeyword(k string) error {
	if len(k) < 1 || len(k) > 79 {
		return fmt.Errorf("png: text keyword %q must have 1 to 79 characters", k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c < 32 || c > 126 || (c == ' ' && (i == 0 || i == len(k)-1 || k[i-1] == ' ')) {
			return fmt.Errorf("png: text keyword %q: only printable ASCII, single inner spaces", k)
		}
	}
	return nil
}

// latin1 converts s to ISO 8859-1 when every rune fits (NUL excluded).
func latin1(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r == 0 || r > 0xff || r == utf8.RuneError {
			return nil, false
		}
		out = append(out, byte(r))
	}
	return out, true
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// ReadPNGText reads the text chunks (tEXt, zTXt and iTXt) of a PNG stream
// in file order, checking the signature and every chunk's CRC. Values are
// returned as UTF-8.
func ReadPNGText(r io.Reader) ([]TextEntry, error) {
	sig := make([]byte, 8)
	if _, err := io.ReadFull(r, sig); err != nil || !bytes.Equal(sig, pngSignature) {
		return nil, fmt.Errorf("png: not a PNG file")
	}
	var out []TextEntry
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("png: truncated before IEND")
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		typ := string(hdr[4:8])
		if n > 1<<28 {
			return nil, fmt.Errorf("png: %s chunk of %d bytes", typ, n)
		}
		data := make([]byte, n+4)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("png: truncated %s chunk", typ)
		}
		crc := crc32.NewIEEE()
		crc.Write(hdr[4:8])
		crc.Write(data[:n])
		if crc.Sum32() != binary.BigEndian.Uint32(data[n:]) {
			return nil, fmt.Errorf("png: CRC mismatch in a %s chunk", typ)
		}
		data = data[:n]
		switch typ {
		case "IEND":
			return out, nil
		case "tEXt", "zTXt", "iTXt":
			t, err := parseText(typ, data)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		}
	}
}

func parseText(typ string, data []byte) (TextEntry, error) {
	k := bytes.IndexByte(data, 0)
	if k < 1 {
		return TextEntry{}, fmt.Errorf("png: %s chunk without a keyword", typ)
	}
	key, rest := string(data[:k]), data[k+1:]
	fromLatin1 := func(b []byte) string {
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	}
	inflate := func(b []byte) ([]byte, error) {
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("png: %s chunk %q: %w", typ, key, err)
		}
		defer zr.Close()
		v, err := io.ReadAll(io.LimitReader(zr, 1<<26))
		if err != nil {
			return nil, fmt.Errorf("png: %s chunk %q: %w", typ, key, err)
		}
		return v, nil
	}
	switch typ {
	case "tEXt":
		return TextEntry{key, fromLatin1(rest)}, nil
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return TextEntry{}, fmt.Errorf("png: zTXt chunk %q: unknown compression", key)
		}
		v, err := inflate(rest[1:])
		return TextEntry{key, fromLatin1(v)}, err
	}
	// iTXt: flag, method, language 0, translated keyword 0, text.
	if len(rest) < 2 {
		return TextEntry{}, fmt.Errorf("png: iTXt chunk %q is truncated", key)
	}
	flag, method := rest[0], rest[1]
	rest = rest[2:]
	for i := 0; i < 2; i++ {
		j := bytes.IndexByte(rest, 0)
		if j < 0 {
			return TextEntry{}, fmt.Errorf("png: iTXt chunk %q is truncated", key)
		}
		rest = rest[j+1:]
	}
	if flag == 1 {
		if method != 0 {
			return TextEntry{}, fmt.Errorf("png: iTXt chunk %q: unknown compression", key)
		}
		var err error
		if rest, err = inflate(rest); err != nil {
			return TextEntry{}, err
		}
	}
	if !utf8.Valid(rest) {
		return TextEntry{}, fmt.Errorf("png: iTXt chunk %q is not UTF-8", key)
	}
	return TextEntry{key, string(rest)}, nil
}
