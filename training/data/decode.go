package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/draw"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"io"
	"os"

	_ "golang.org/x/image/webp" // registers the WebP decoder
)

// MaxPixels bounds the decoded size of one image (width x height after the
// header is read, before decoding), so that a forged header cannot make the
// loader allocate gigabytes.
const MaxPixels = 100 << 20

// DecodeError says why a file is not a usable image. Reason is a short
// phrase without the path ("empty file", "truncated or damaged jpeg:
// unexpected EOF", ...).
type DecodeError struct {
	Path   string
	Reason string
}

func (e *DecodeError) Error() string { return e.Path + ": " + e.Reason }

// DecodeFile reads a PNG, JPEG or WebP file (recognised by its content,
// not its name) and returns the image the way a viewer shows it: for JPEG
// the EXIF orientation (APP1 Exif IFD0 tag 0x0112) is applied. Errors are
// *DecodeError naming the file and the reason.
func DecodeFile(path string) (image.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &DecodeError{Path: path, Reason: readReason(err)}
	}
	img, _, err := DecodeBytes(path, b)
	return img, err
}

func readReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}

// DecodeBytes decodes the contents b of the file named name (used in
// errors only) like DecodeFile, and returns the format name ("png",
// "jpeg", "webp").
func DecodeBytes(name string, b []byte) (img image.Image, format string, err error) {
	fail := func(reason string) (image.Image, string, error) {
		return nil, format, &DecodeError{Path: name, Reason: reason}
	}
	if len(b) == 0 {
		return fail("empty file")
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if errors.Is(err, image.ErrFormat) {
		return fail("not an image (not PNG, JPEG or WebP)")
	}
	if err != nil {
		return fail(fmt.Sprintf("truncated or damaged %s header: %v", format, errText(err)))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return fail(fmt.Sprintf("%s of size %dx%d", format, cfg.Width, cfg.Height))
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return fail(fmt.Sprintf("%dx%d %s is larger than %d megapixels", cfg.Width, cfg.Height, format, MaxPixels>>20))
	}
	// The decoders of the standard library and x/image return errors on
	// bad input; the recover is a last guard so that a decoder bug on a
	// hostile file costs that file only.
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("decoder failed: %v", r)
			}
		}()
		img, _, err = image.Decode(bytes.NewReader(b))
	}()
	if err != nil {
		return fail(fmt.Sprintf("truncated or damaged %s: %v", format, errText(err)))
	}
	if format == "jpeg" {
		img = Orient(img, JPEGOrientation(b))
	}
	return img, format, nil
}

func errText(err error) string {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of file"
	}
	return err.Error()
}

// JPEGOrientation returns the EXIF orientation (1..8) of the JPEG file
// contents b, or 1 when b has no Exif APP1 segment, no orientation tag, or
// anything malformed on the way: it never fails and never reads out of
// bounds.
func JPEGOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	p := 2
	for p+4 <= len(b) {
		if b[p] != 0xFF {
			return 1 // not at a marker: give up rather than guess
		}
		m := b[p+1]
		switch {
		case m == 0xFF: // fill byte
			p++
			continue
		case m == 0x01 || m >= 0xD0 && m <= 0xD8: // markers without a length
			p += 2
			continue
		case m == 0xDA || m == 0xD9: // start of scan / end of image: no Exif after
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[p+2:]))
		if n < 2 || p+2+n > len(b) {
			return 1
		}
		seg := b[p+4 : p+2+n]
		if m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			if o := tiffOrientation(seg[6:]); o != 0 {
				return o
			}
		}
		p += 2 + n
	}
	return 1
}

// tiffOrientation reads tag 0x0112 of IFD0 of the TIFF structure t, or
// returns 0.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 0
	}
	if bo.Uint16(t[2:]) != 42 {
		return 0
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 0
	}
	n := int64(bo.Uint16(t[off:]))
	for i := int64(0); i < n; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		typ, count := bo.Uint16(t[e+2:]), bo.Uint32(t[e+4:])
		var v int
		switch {
		case typ == 3 && count >= 1: // SHORT, stored in the first two value bytes
			v = int(bo.Uint16(t[e+8:]))
		case typ == 4 && count >= 1: // LONG, tolerated
			v = int(bo.Uint32(t[e+8:]))
		default:
			return 0
		}
		if v >= 1 && v <= 8 {
			return v
		}
		return 0
	}
	return 0
}

// Orient returns img transformed for EXIF orientation o, so that it shows
// upright: 2 mirror, 3 rotate 180, 4 flip vertically, 5 transpose, 6 rotate
// 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise. Orientation 1
// and unknown values return img itself.
func Orient(img image.Image, o int) image.Image {
	if o < 2 || o > 8 {
		return img
	}
	b := img.Bounds()
	src := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(src, src.Bounds(), img, b.Min, draw.Src)
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < dh; y++ {
		for x := 0; x < dw; x++ {
			var sx, sy int // the source pixel shown at (x, y)
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, h-1-x
			case 7:
				sx, sy = w-1-y, h-1-x
			case 8:
				sx, sy = w-1-y, x
			}
			copy(dst.Pix[y*dst.Stride+4*x:y*dst.Stride+4*x+4], src.Pix[sy*src.Stride+4*sx:])
		}
	}
	return dst
}
