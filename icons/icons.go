// Package icons bundles InstructBooth's images: the application icon.
package icons

import _ "embed"

// AppPNG is the 256x256 application icon.
//
//go:embed icon.png
var AppPNG []byte
