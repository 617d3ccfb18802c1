// Package data loads the subject images of a personalisation run: a folder
// or a list of PNG, JPEG (EXIF orientation applied) and WebP files, each
// resized on its short side and center-cropped to the square training
// resolution. Files that cannot be used are reported by name with the
// reason and skipped; the run goes on with the rest. Random horizontal
// flips are drawn at batch time from a training.Stream, so a resumed run
// sees the same flips as an uninterrupted one.
package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/image/draw"

	"github.com/instructbooth/instructbooth/training"
)

// DefaultResolution is SD 1.x's training resolution.
const DefaultResolution = 512

// Image is one usable training image.
type Image struct {
	Path   string
	SHA256 string // hex SHA-256 of the file's bytes (the store's content key)
	Format string // "png", "jpeg" or "webp"
	// Width and Height are the size as shown (after EXIF orientation),
	// before resizing.
	Width, Height int
	// Crop is the training crop, Res x Res, opaque (transparent pixels
	// are composited onto white).
	Crop *image.RGBA
}

// Set is the usable images of a load, in file-name order (LoadFolder) or
// the order given (LoadFiles).
type Set struct {
	Res    int
	Images []Image
}

// Skipped is a file that was not used, with the reason.
type Skipped struct {
	Path   string
	Reason string
}

func (s Skipped) String() string { return s.Path + ": " + s.Reason }

// ErrNoImages is wrapped by the error of a load that found no usable image.
var ErrNoImages = errors.New("no usable images")

// LoadFolder loads every file directly inside dir (not sub-folders; hidden
// files, whose names start with ".", are ignored) in name order, like
// LoadFiles.
func LoadFolder(dir string, res int) (*Set, []Skipped, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("images: %w", err)
	}
	var paths []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	sort.Strings(paths)
	set, skipped, err := LoadFiles(paths, res)
	if err != nil && len(paths) == 0 {
		err = fmt.Errorf("images: %s: %w (the folder has no files)", dir, ErrNoImages)
	}
	return set, skipped, err
}

// LoadFiles loads the listed files at training resolution res (> 0; images
// are res x res). A file that is not a PNG, JPEG or WebP image, is empty,
// truncated or otherwise unreadable, is smaller than res/2 on its short
// side, or has the same content as an earlier file is skipped and listed
// with the reason. No usable image at all is an error wrapping ErrNoImages
// that lists the reasons.
func LoadFiles(paths []string, res int) (*Set, []Skipped, error) {
	if res < 8 {
		return nil, nil, fmt.Errorf("images: training resolution %d is too small", res)
	}
	set := &Set{Res: res}
	var skipped []Skipped
	seen := map[string]string{}
	for _, p := range paths {
		img, reason := loadOne(p, res)
		if reason == "" {
			if first, dup := seen[img.SHA256]; dup {
				reason = "same content as " + first
			} else {
				seen[img.SHA256] = p
			}
		}
		if reason != "" {
			skipped = append(skipped, Skipped{Path: p, Reason: reason})
			continue
		}
		set.Images = append(set.Images, img)
	}
	if len(set.Images) == 0 {
		var why []string
		for _, s := range skipped {
			why = append(why, s.String())
		}
		msg := "no files given"
		if len(why) > 0 {
			msg = strings.Join(why, "; ")
		}
		return nil, skipped, fmt.Errorf("images: %w (%s)", ErrNoImages, msg)
	}
	return set, skipped, nil
}

// loadOne returns the image or the reason it is skipped.
func loadOne(path string, res int) (Image, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Image{}, readReason(err)
	}
	img, format, err := DecodeBytes(path, b)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return Image{}, de.Reason
		}
		return Image{}, err.Error()
	}
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	if min(w, h) < (res+1)/2 {
		return Image{}, fmt.Sprintf("%dx%d is smaller than half the training resolution (%d px on the short side)", w, h, (res+1)/2)
	}
	sum := sha256.Sum256(b)
	return Image{Path: path, SHA256: hex.EncodeToString(sum[:]), Format: format, Width: w, Height: h, Crop: Prepare(img, res)}, ""
}

// Prepare composites img onto white, scales it so that its short side is
// res (Catmull-Rom, which widens its kernel when shrinking, so downscaling
// averages rather than aliases) and returns the centered res x res crop.
func Prepare(img image.Image, res int) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	s := min(w, h)
	// The crop's square in source pixels; scaling only it to res x res is
	// resize-then-crop without the full-size intermediate.
	src := image.Rect(b.Min.X+(w-s)/2, b.Min.Y+(h-s)/2, b.Min.X+(w-s)/2+s, b.Min.Y+(h-s)/2+s)
	flat := image.NewRGBA(image.Rect(0, 0, s, s))
	draw.Draw(flat, flat.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(flat, flat.Bounds(), img, src.Min, draw.Over)
	if s == res {
		return flat
	}
	dst := image.NewRGBA(image.Rect(0, 0, res, res))
	draw.CatmullRom.Scale(dst, dst.Bounds(), flat, flat.Bounds(), draw.Src, nil)
	return dst
}

// Tensor returns the crop of image i as [3, Res, Res] floats in [-1, 1]
// (channel-major, as the VAE takes it), mirrored left-right when flip.
func (s *Set) Tensor(i int, flip bool) []float32 {
	return ToTensor(s.Images[i].Crop, flip)
}

// ToTensor returns the RGB of img as [3, H, W] floats in [-1, 1]
// (v / 127.5 - 1), mirrored left-right when flip.
func ToTensor(img *image.RGBA, flip bool) []float32 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float32, 3*w*h)
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			sx := x
			if flip {
				sx = w - 1 - x
			}
			for c := 0; c < 3; c++ {
				out[(c*h+y)*w+x] = float32(row[4*sx+c])/127.5 - 1
			}
		}
	}
	return out
}

// Pick draws an image index (uniform over the set) and a horizontal flip
// (probability 1/2) from st: the batch-time augmentation.
func (s *Set) Pick(st *training.Stream) (i int, flip bool) {
	i = st.Intn(len(s.Images))
	flip = st.Uint32()&1 == 1
	return i, flip
}
