package app

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // image.Decode reads JPEG
	_ "image/png"  // and PNG
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/data"
)

// MaxImageFile is the largest image file an import reads.
const MaxImageFile = 64 << 20

// DecodeImage decodes one training image file (its name and bytes) or says
// why it cannot be used, through training/data (PNG, JPEG with its EXIF
// orientation, WebP; recognised by content). It is the only place the
// import decodes pixels. Images under 8x8 pixels are refused here; the
// trainer later skips those under half its resolution.
func DecodeImage(name string, raw []byte) (image.Image, error) {
	img, format, err := data.DecodeBytes(name, raw)
	if err != nil {
		var de *data.DecodeError
		if errors.As(err, &de) {
			return nil, errors.New(de.Reason)
		}
		return nil, err
	}
	b := img.Bounds()
	if b.Dx() < 8 || b.Dy() < 8 {
		return nil, fmt.Errorf("%s image of %dx%d pixels is too small", format, b.Dx(), b.Dy())
	}
	return img, nil
}

// BadFile is a file an import could not use and why.
type BadFile struct {
	Path, Reason string
}

// ImportResult is what ImportFiles found: the images to store and the
// files it could not use.
type ImportResult struct {
	Images []store.Image
	Bad    []BadFile
}

// ImportFiles reads image files and folders (recursively; hidden files and
// folders are skipped) and decodes every file with DecodeImage. Files that
// cannot be read or decoded are listed in Bad with the reason; the others
// are returned in path order with their bytes as read (the store keeps the
// original file). It never fails as a whole.
func ImportFiles(paths []string) ImportResult {
	var files []string
	var res ImportResult
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			res.Bad = append(res.Bad, BadFile{p, describeErr(err)})
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				res.Bad = append(res.Bad, BadFile{path, describeErr(err)})
				return nil
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			res.Bad = append(res.Bad, BadFile{p, describeErr(err)})
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	for _, f := range files {
		data, err := readLimited(f)
		if err == nil {
			_, err = DecodeImage(filepath.Base(f), data)
		}
		if err != nil {
			res.Bad = append(res.Bad, BadFile{f, err.Error()})
			continue
		}
		res.Images = append(res.Images, store.Image{Name: filepath.Base(f), Data: data})
	}
	return res
}

func readLimited(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s", describeErr(err))
	}
	if st.Size() > MaxImageFile {
		return nil, fmt.Errorf("file of %d MiB is larger than %d MiB", st.Size()>>20, MaxImageFile>>20)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("the file is empty")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s", describeErr(err))
	}
	return data, nil
}

// describeErr drops the path os errors repeat (the dialog shows it).
func describeErr(err error) string {
	var pe *fs.PathError
	if e, ok := err.(*fs.PathError); ok {
		pe = e
		return pe.Err.Error()
	}
	return err.Error()
}

// SubjectNameFor proposes a subject name for dropped paths: the folder's
// name, or the first file's name without its extension.
func SubjectNameFor(paths []string) string {
	if len(paths) == 0 {
		return "New subject"
	}
	p := filepath.Clean(paths[0])
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		if len(paths) > 1 {
			p = filepath.Dir(p)
		} else {
			p = strings.TrimSuffix(p, filepath.Ext(p))
		}
	}
	name := filepath.Base(p)
	if name == "." || name == string(filepath.Separator) || name == "" {
		return "New subject"
	}
	return name
}

// Thumbnail scales img down (box filter) so that its longer side is at
// most size pixels; smaller images are copied as they are.
func Thumbnail(img image.Image, size int) *image.NRGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	scale := 1.0
	if w > size || h > size {
		scale = float64(size) / float64(w)
		if h > w {
			scale = float64(size) / float64(h)
		}
	}
	tw, th := int(float64(w)*scale+0.5), int(float64(h)*scale+0.5)
	tw, th = max1(tw), max1(th)
	out := image.NewNRGBA(image.Rect(0, 0, tw, th))
	for ty := 0; ty < th; ty++ {
		y0, y1 := b.Min.Y+ty*h/th, b.Min.Y+(ty+1)*h/th
		y1 = max(y1, y0+1)
		for tx := 0; tx < tw; tx++ {
			x0, x1 := b.Min.X+tx*w/tw, b.Min.X+(tx+1)*w/tw
			x1 = max(x1, x0+1)
			var r, g, bl, a, n uint64
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
					r, g, bl, a = r+uint64(c.R), g+uint64(c.G), bl+uint64(c.B), a+uint64(c.A)
					n++
				}
			}
			out.SetNRGBA(tx, ty, color.NRGBA{uint8(r / n), uint8(g / n), uint8(bl / n), uint8(a / n)})
		}
	}
	return out
}

func max1(v int) int { return max(v, 1) }
