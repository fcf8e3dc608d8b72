#!/usr/bin/perl
# Normalises an etcdctl transcript (stdin) of etcdctl_compat_test.sh so that etcd's and
# kvnode's can be compared byte for byte. ARGV[0] lists the ids the script captured, one
# "KIND VALUE" a line (VALUE in hex, as etcdctl prints ids).
#
# Every rule, and why the value differs by nature:
#  1. Captured lease and member ids, hex and decimal (-w json prints them in decimal), become
#     <lease-N> / <member-N> by order of capture: both servers pick them at random. After
#     "memberID:" (an alarm) the hex form becomes <member-N:hex>, so the form printed is kept.
#     The ports (listed as "port-NAME PORT") become <port-NAME>: the test picks them at random
#     on each run, the same for both servers, and expected_differences.txt shows them.
#     etcdctl prints member add's and remove's ids with %16x: the space padding of a short id
#     goes too.
#  2. Cluster ids (cluster_id, ClusterID, "in/to/from cluster X"): a hash of random member ids.
#  3. Header member ids (member_id, MemberID): the same ids as rule 1, in headers of any
#     member; replaced wholesale so a header needs no capture.
#  4. Lease ids inside lock and election keys ("name/<hex>"): a lock's key is its lease id.
#  5. DB size ("db_size", DB SIZE, "Finished defragmenting" sizes are not printed): each
#     backend lays out its file its own way (bbolt pages vs LMDB pages).
#  6. Raft index and applied index in endpoint status (raft_index, raft_applied_index, the
#     simple/table columns): the servers log different bootstrap entries (etcd logs one
#     ConfChange per founding member and a publish of member attributes; kvnode its own).
#  7. Raft terms: "raft_term"/RaftTerm/the status term column: an election may take one term
#     or two on either server, and pre-vote timing differs.
#  8. endpoint health's "took = 1.2ms": wall time. A lease's remaining TTL ("remaining(599s)",
#     "TTL" of timetolive -w json is not used): wall time since the grant, truncated by etcd.
#  9. snapshot save's log lines (stderr, zap JSON with "ts", "took", "size") are dropped except
#     their "msg": timestamps and durations; the size is rule 5's.
# 10. (retired: members' client URLs are compared as they are, their ports by rule 2, now that
#     kvnode's members publish them through the log as etcd's do.)
# 11. Members are listed in id order by both servers, and ids are random: consecutive member
#     list lines, the members of member list -w json, and those of member add's
#     ETCD_INITIAL_CLUSTER are sorted.
# 12. A lease's attached keys (lease timetolive --keys) are sorted: etcd lists them in its map's
#     random order.
# 13. Consecutive log lines (rule 9) are printed sorted: etcdctl's snapshot save logs from two
#     goroutines, so a refused download's "fetching snapshot" and "failed to receive from snapshot
#     stream; closing" come in either order (an ASan CI run at 25ece38 saw etcd's swapped).
use strict;
use warnings;
use bigint;

my %replace;
my %count;
my %hex_form;
open(my $ids, '<', $ARGV[0]) or die "open $ARGV[0]: $!";
my %ports;
while (<$ids>) {
  chomp;
  my ($kind, $hex) = split / /;
  if ($kind =~ /^port-/) { $ports{$hex} = "<$kind>"; next; }
  $hex =~ s/^0+(?=.)//;
  next if exists $replace{$hex};
  my $name = "<$kind-" . ++$count{$kind} . ">";
  $replace{$hex} = $name;
  $hex_form{$hex} = 1;
  $replace{sprintf('%016s', $hex) =~ tr/ /0/r} = $name;  # leases print as %016x
  $replace{Math::BigInt->from_hex($hex) . ""} = $name;
}
close $ids;
my $id_pattern = join('|', map { quotemeta } sort { length($b) <=> length($a) } keys %replace);

my @members;  # a run of member list lines, printed sorted (rule 11)
my @logs;     # a run of log lines, printed sorted (rule 13)
while (my $line = <STDIN>) {
  $line =~ s/^Member +/Member /;
  if ($id_pattern ne '') {                                                             # 1
    $line =~ s/(memberID:)($id_pattern)\b/$1 . ($hex_form{$2} ? substr($replace{$2}, 0, -1) . ':hex>' : $replace{$2})/ge;
    $line =~ s/\b($id_pattern)\b/$replace{$1}/g;
  }
  $line =~ s/(127\.0\.0\.1:)(\d+)\b/$1 . ($ports{$2} \/\/ $2)/ge;
  $line =~ s/("cluster_id":)\d+/$1<cluster>/g;                                         # 2
  $line =~ s/("ClusterID" : )\d+/$1<cluster>/g;
  # etcd lists a lease's attached keys in its map's random order; kvnode sorts them.
  $line =~ s/(attached keys\(\[)([^\]]*)(\]\))/$1 . join(' ', sort split(\/ \/, $2)) . $3/e;
  # etcdctl prints the id with %16x: a shorter one is padded with spaces.
  $line =~ s/((?:in|to|from) cluster) +[0-9a-f]+/$1 <cluster>/g;
  $line =~ s/("member_id":)\d+/$1<member>/g;                                           # 3
  $line =~ s/("MemberID" : )\d+/$1<member>/g;
  $line =~ s{\b((?:lock|election)[\w-]*/)[0-9a-f]+\b}{$1<lease>}g;                     # 4
  $line =~ s/("dbSize":|"dbSizeInUse":)\d+/$1<db-size>/g;                                             # 5
  $line =~ s/("raftIndex":|"raftAppliedIndex":)\d+/$1<raft-index>/g;                   # 6
  $line =~ s/("raft_term":|"raftTerm":)\d+/$1<raft-term>/g;                            # 7
  $line =~ s/("RaftTerm" : )\d+/$1<raft-term>/g;
  # endpoint status, simple: "ep, id, version, size, leader, learner, term, index, applied, errors"
  $line =~ s/^(127\.0\.0\.1:[^,]+, [^,]+, [^,]+, )[^,]+, ([^,]+, [^,]+, )\d+, \d+, \d+, /$1<db-size>, $2<raft-term>, <raft-index>, <raft-index>, /;
  $line =~ s/(took = )[\d.]+[a-zµ]+/$1<duration>/;                                     # 8
  $line =~ s/(remaining\()\d+s\)/$1<seconds>)/;
  if ($line =~ /^! \{"level":.*"msg":("[^"]*")/) {                                    # 9
    print sort @members;
    @members = ();
    push @logs, "! {log $1}\n";                                                       # 13
    next;
  }
  print sort @logs;
  @logs = ();
  $line =~ s/("members":\[)(\{.*?\})\]/$1 . join(',', sort split(\/(?<=\}),(?=\{)\/, $2)) . ']'/e;
  $line =~ s/^(ETCD_INITIAL_CLUSTER=")([^"]*)"/$1 . join(',', sort split(\/,\/, $2)) . '"'/e;  # 11
  # member list, simple: "id, status, name, peer urls, client urls, is learner"
  if ($line =~ /^[^,]+, (?:started|unstarted), [^,]*, [^,]*, [^,]*, (?:true|false)$/) {
    push @members, $line;
    next;
  }
  print sort @members;
  @members = ();
  print $line;
}
print sort @members;
print sort @logs;
