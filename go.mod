module github.com/instructbooth/instructbooth

go 1.26

require (
	github.com/rajveermalviya/go-webgpu/wgpu v0.17.1
	github.com/x448/float16 v0.8.4
)
