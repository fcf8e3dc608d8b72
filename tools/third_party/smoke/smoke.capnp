@0xd5f4c1c2a0e1b3a7;

interface Adder {
  add @0 (a :Int64, b :Int64) -> (sum :Int64);
}
