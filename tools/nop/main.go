// nop is tools/bench.sh's yardstick for start-up: fork+exec+exit of a static Go binary that does nothing.
package main

func main() {}
