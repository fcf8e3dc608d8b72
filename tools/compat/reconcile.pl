#!/usr/bin/perl
# reconcile.pl EXPECTED ETCD KVNODE: prints KVNODE's normalised transcript with each expected
# difference (EXPECTED, see expected_differences.txt) replaced by etcd's answer, after checking
# that both servers still answer exactly as the entry says. An entry stands for the first
# occurrence of its command whose answers differ (in script order); an entry whose answers no
# longer match, or that no difference uses (kvnode fixed), fails the run, so the list cannot
# go stale.
use strict;
use warnings;

sub slurp { local $/; open(my $f, '<', $_[0]) or die "open $_[0]: $!"; return scalar <$f>; }

# A transcript as [command, body] pairs; a body is everything up to the next "$ " line.
sub blocks {
  my @blocks;
  for my $line (split /^/, $_[0]) {
    if ($line =~ /^\$ /) { push @blocks, [$line, '']; }
    elsif (@blocks) { $blocks[-1][1] .= $line; }
    else { die "transcript does not start with a command: $line"; }
  }
  return @blocks;
}

# Entries: "$ command", then "--- etcd" and "--- kvnode" sections, each ending with its
# "[exit N]" line; lines between entries ("#" reasons, blank lines) are not read.
my @expected;
my $section;
for my $line (split /^/, slurp($ARGV[0])) {
  if ($line =~ /^\$ /) { push @expected, { command => $line, etcd => '', kvnode => '', used => 0 }; $section = undef; }
  elsif ($line =~ /^--- (etcd|kvnode)$/) { $section = $1; }
  elsif (defined $section) {
    $expected[-1]{$section} .= $line;
    $section = undef if $line =~ /^\[exit \d+\]$/;  # a recorded answer ends with its exit code
  }
}

my @etcd = blocks(slurp($ARGV[1]));
my @kvnode = blocks(slurp($ARGV[2]));
die "etcd ran " . @etcd . " commands, kvnode " . @kvnode . "\n" if @etcd != @kvnode;
my $failed = 0;
for my $i (0 .. $#kvnode) {
  die "command $i differs: $etcd[$i][0] vs $kvnode[$i][0]" if $etcd[$i][0] ne $kvnode[$i][0];
  next if $etcd[$i][1] eq $kvnode[$i][1];
  # An entry stands for the first occurrence of its command where the answers differ.
  my ($entry) = grep { !$_->{used} && $_->{command} eq $kvnode[$i][0] } @expected;
  next unless $entry;
  $entry->{used} = 1;
  if ($etcd[$i][1] ne $entry->{etcd} || $kvnode[$i][1] ne $entry->{kvnode}) {
    print STDERR "expected difference no longer holds for $entry->{command}",
      "etcd answered:\n$etcd[$i][1]kvnode answered:\n$kvnode[$i][1]";
    $failed = 1;
    next;
  }
  $kvnode[$i][1] = $etcd[$i][1];
}
for my $entry (grep { !$_->{used} } @expected) {
  print STDERR "expected difference not seen (fixed? remove it): $entry->{command}";
  $failed = 1;
}
print map { $_->[0] . $_->[1] } @kvnode;
exit $failed;
