// End-to-end checks of Spate with Kafka's own Java client (org.apache.kafka:kafka-clients), run by
// ci/e2e/test_java_client.py from source with the `java` launcher:
//
//   java -cp "$(cat CLASSPATH_FILE)" ci/java/SpateJavaCheck.java MODE BOOTSTRAP PREFIX [key=value...]
//
// MODE is one of
//   produce       an idempotent producer writes `records` keyed records with headers; a plain
//                 consumer (assign, no group) reads them back: each exactly once, at the offset
//                 its send was acknowledged with, key, value and header intact;
//   transactions  a transactional producer runs `transactions` transactions over every partition,
//                 committing the even ones and aborting the odd ones (their records flushed to the
//                 log first); read_committed sees exactly the committed values, in send order per
//                 partition, read_uncommitted all of them, each partition's log end is its records
//                 plus one marker per transaction; a second producer with the same
//                 transactional.id fences the first;
//   eos           consume-transform-produce: a read_committed member of a consumer group and a
//                 transactional producer turn `records` inputs into outputs, a transaction per
//                 poll with the input offsets (sendOffsetsToTransaction with the consumer's group
//                 metadata), every third transaction aborted and its inputs processed again;
//                 read_committed sees each output exactly once, the group's committed offsets are
//                 the input ends, and a new member of the group resumes from them.
// Options: partitions=3 replication=1 records=N transactions=N.
//
// Every mode creates its own topics (PREFIX-...) with the Admin client. The last line printed is
//   SPATE-JAVA-CHECK mode=MODE result=OK|FAIL|ERROR kafka-clients=VERSION key=value...
// and the exit status is 0 (OK), 1 (a check failed: each failure is printed before it as a
// "mismatch:" line), 2 (bad arguments) or 3 (the client threw).

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public final class SpateJavaCheck {
    static final String RESULT_TAG = "SPATE-JAVA-CHECK";
    // Bounds on waits, not expectations of speed: the CI machine is small and shared.
    static final long TOPIC_READY_MS_MAX = 30_000;
    static final long READ_MS_MAX = 60_000;
    static final long EOS_MS_MAX = 120_000;
    static final int EOS_POLL_RECORDS_MAX = 60;

    private SpateJavaCheck() {}

    /** Parsed command line. */
    record Args(String mode, String bootstrap, String prefix, int partitions, short replication,
                int records, int transactions) {
        static Args parse(String[] argv) {
            if (argv.length < 3) {
                throw new IllegalArgumentException("usage: MODE BOOTSTRAP PREFIX [key=value...]");
            }
            Map<String, String> options = new HashMap<>();
            for (int i = 3; i < argv.length; i++) {
                String[] kv = argv[i].split("=", 2);
                if (kv.length != 2) {
                    throw new IllegalArgumentException("not key=value: " + argv[i]);
                }
                options.put(kv[0], kv[1]);
            }
            Args args = new Args(argv[0], argv[1], argv[2],
                    Integer.parseInt(options.getOrDefault("partitions", "3")),
                    Short.parseShort(options.getOrDefault("replication", "1")),
                    Integer.parseInt(options.getOrDefault("records", "3000")),
                    Integer.parseInt(options.getOrDefault("transactions", "10")));
            options.keySet().removeAll(Set.of("partitions", "replication", "records", "transactions"));
            if (!options.isEmpty()) {
                throw new IllegalArgumentException("unknown options " + options.keySet());
            }
            if (args.partitions < 1 || args.replication < 1 || args.records < 1 || args.transactions < 2) {
                throw new IllegalArgumentException("partitions, replication, records >= 1, transactions >= 2");
            }
            return args;
        }
    }

    /** What a mode found: facts for the result line and mismatches (empty when all held). */
    static final class Report {
        final Map<String, Object> facts = new LinkedHashMap<>();
        final List<String> mismatches = new ArrayList<>();

        void fact(String key, Object value) {
            facts.put(key, value);
        }

        void expect(boolean holds, String what) {
            if (!holds) {
                mismatches.add(what);
            }
        }

        <T> void expectEqual(T expected, T actual, String what) {
            if (!expected.equals(actual)) {
                mismatches.add(what + ": expected " + abbreviate(expected) + ", got " + abbreviate(actual));
            }
        }
    }

    public static void main(String[] argv) {
        String mode = argv.length > 0 ? argv[0] : "?";
        Args args;
        try {
            args = Args.parse(argv);
        } catch (IllegalArgumentException e) {
            System.out.println(resultLine(mode, "ERROR", Map.of("error", e.getMessage())));
            System.exit(2);
            return;
        }
        Report report = new Report();
        try {
            switch (args.mode) {
                case "produce" -> produce(args, report);
                case "transactions" -> transactions(args, report);
                case "eos" -> eos(args, report);
                default -> throw new IllegalArgumentException("unknown mode " + args.mode);
            }
        } catch (Exception e) {
            e.printStackTrace(System.out);
            report.fact("error", e.getClass().getSimpleName() + ": " + e.getMessage());
            System.out.println(resultLine(mode, "ERROR", report.facts));
            System.exit(3);
        }
        for (String m : report.mismatches) {
            System.out.println("mismatch: " + m);
        }
        boolean ok = report.mismatches.isEmpty();
        report.fact("mismatches", report.mismatches.size());
        System.out.println(resultLine(mode, ok ? "OK" : "FAIL", report.facts));
        System.exit(ok ? 0 : 1);
    }

    static String resultLine(String mode, String result, Map<String, Object> facts) {
        StringBuilder line = new StringBuilder(RESULT_TAG)
                .append(" mode=").append(mode)
                .append(" result=").append(result)
                .append(" kafka-clients=").append(AppInfoParser.getVersion());
        facts.forEach((k, v) -> line.append(' ').append(k).append('=').append(String.valueOf(v).replace(' ', '_')));
        return line.toString();
    }

    // ---------------------------------------------------------------- produce

    static void produce(Args args, Report report) throws Exception {
        String topic = args.prefix + "-plain";
        createTopics(args, List.of(topic));
        Map<Integer, RecordMetadata> acked = new HashMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerConfig(args, null))) {
            List<Future<RecordMetadata>> sends = new ArrayList<>(args.records);
            for (int i = 0; i < args.records; i++) {
                ProducerRecord<String, String> record = new ProducerRecord<>(topic, "key-" + i, "value-" + i);
                record.headers().add("seq", Integer.toString(i).getBytes());
                sends.add(producer.send(record));
            }
            producer.flush();
            for (int i = 0; i < args.records; i++) {
                acked.put(i, sends.get(i).get(30, TimeUnit.SECONDS));
            }
        }
        Set<Integer> partitionsUsed = acked.values().stream().map(RecordMetadata::partition).collect(Collectors.toSet());
        report.fact("produced", acked.size());
        report.fact("partitions_written", partitionsUsed.size());
        report.expectEqual(Math.min(args.partitions, args.records), partitionsUsed.size(), "partitions the keys spread over");

        List<ConsumerRecord<String, String>> read = readAll(args, List.of(topic), "read_uncommitted");
        report.fact("consumed", read.size());
        report.expectEqual(args.records, read.size(), "records read back");
        Set<Integer> seen = new HashSet<>();
        for (ConsumerRecord<String, String> r : read) {
            checkPlainRecord(r, acked, seen, report);
        }
        report.expectEqual(args.records, seen.size(), "distinct records read back");
        Map<TopicPartition, Long> ends = endOffsets(args, partitionsOf(topic, args.partitions), "read_uncommitted");
        long endSum = ends.values().stream().mapToLong(Long::longValue).sum();
        report.fact("log_end_sum", endSum);
        report.expectEqual((long) args.records, endSum, "sum of log end offsets (no duplicate written)");
    }

    static void checkPlainRecord(ConsumerRecord<String, String> r, Map<Integer, RecordMetadata> acked,
                                 Set<Integer> seen, Report report) {
        Header seqHeader = r.headers().lastHeader("seq");
        if (seqHeader == null) {
            report.expect(false, "no seq header at " + r.partition() + "@" + r.offset());
            return;
        }
        int seq = Integer.parseInt(new String(seqHeader.value()));
        report.expect(seen.add(seq), "record " + seq + " read twice");
        report.expectEqual("key-" + seq, r.key(), "key of record " + seq);
        report.expectEqual("value-" + seq, r.value(), "value of record " + seq);
        RecordMetadata meta = acked.get(seq);
        if (meta == null) {
            report.expect(false, "record " + seq + " was never sent");
            return;
        }
        report.expectEqual(meta.partition() + "@" + meta.offset(), r.partition() + "@" + r.offset(),
                "place of record " + seq + " (acknowledged vs read)");
    }

    // ---------------------------------------------------------------- transactions

    /** What the transactions wrote: values per partition in send order, markers per partition. */
    static final class Ledger {
        final Map<Integer, List<String>> committed = new TreeMap<>();
        final Map<Integer, List<String>> written = new TreeMap<>();
        final Map<Integer, Integer> markers = new TreeMap<>();

        void sent(int partition, String value, boolean willCommit) {
            written.computeIfAbsent(partition, p -> new ArrayList<>()).add(value);
            if (willCommit) {
                committed.computeIfAbsent(partition, p -> new ArrayList<>()).add(value);
            }
        }

        /** A transaction ended: each partition it wrote gets one marker. */
        void ended(Set<Integer> partitions) {
            partitions.forEach(p -> markers.merge(p, 1, Integer::sum));
        }
    }

    static void transactions(Args args, Report report) throws Exception {
        String topic = args.prefix + "-txn";
        String txnId = args.prefix + "-txn-producer";
        createTopics(args, List.of(topic));
        int perTxn = Math.max(args.records / args.transactions, args.partitions);
        Ledger ledger = new Ledger();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerConfig(args, txnId))) {
            producer.initTransactions();
            for (int t = 0; t < args.transactions; t++) {
                runTransaction(producer, topic, t, t % 2 == 0, perTxn, args.partitions, ledger);
            }
            fenceAndCommitWithSuccessor(args, topic, txnId, producer, ledger, report);
        }
        report.fact("transactions", args.transactions + 1);
        report.fact("records_per_transaction", perTxn);
        checkTransactionalReads(args, topic, ledger, report);
    }

    /** Transaction `t`: `records` records over the partitions, then commit or abort. */
    static void runTransaction(KafkaProducer<String, String> producer, String topic, int t, boolean commit,
                               int records, int partitions, Ledger ledger) {
        long begunAt = System.nanoTime();
        producer.beginTransaction();
        Set<Integer> touched = new HashSet<>();
        for (int i = 0; i < records; i++) {
            int partition = i % partitions;
            String value = (commit ? "commit-" : "abort-") + t + "-" + i;
            producer.send(new ProducerRecord<>(topic, partition, "t" + t, value));
            ledger.sent(partition, value, commit);
            touched.add(partition);
        }
        // The records reach the log first (an aborted transaction then has something to hide);
        // the time of each step is printed.
        long sentAt = System.nanoTime();
        producer.flush();
        long flushedAt = System.nanoTime();
        if (commit) {
            producer.commitTransaction();
        } else {
            producer.abortTransaction();
        }
        long endedAt = System.nanoTime();
        ledger.ended(touched);
        System.out.printf("transaction %d: sends %d ms, flush %d ms, %s %d ms%n", t,
                (sentAt - begunAt) / 1_000_000, (flushedAt - sentAt) / 1_000_000,
                commit ? "commit" : "abort", (endedAt - flushedAt) / 1_000_000);
    }

    /** A second producer with the same transactional.id fences the first, then commits one. */
    static void fenceAndCommitWithSuccessor(Args args, String topic, String txnId,
                                            KafkaProducer<String, String> fenced, Ledger ledger, Report report) {
        try (KafkaProducer<String, String> successor = new KafkaProducer<>(producerConfig(args, txnId))) {
            successor.initTransactions();
            Throwable thrown = null;
            try {
                fenced.beginTransaction();
                fenced.send(new ProducerRecord<>(topic, 0, "fenced", "fenced-0"));
                fenced.commitTransaction();
            } catch (Exception e) {
                thrown = e;
                System.out.println("fenced producer threw: " + causeChain(e));
            }
            String fencedBy = fencingCause(thrown);
            report.fact("fenced_by", fencedBy);
            report.expect(fencedBy.equals(ProducerFencedException.class.getSimpleName())
                            || fencedBy.equals(InvalidProducerEpochException.class.getSimpleName()),
                    "the old producer must be fenced (ProducerFencedException or InvalidProducerEpochException), got "
                            + (thrown == null ? "no exception" : causeChain(thrown)));
            runTransaction(successor, topic, -1, true, args.partitions, args.partitions, ledger);
        }
    }

    static void checkTransactionalReads(Args args, String topic, Ledger ledger, Report report)
            throws InterruptedException {
        List<TopicPartition> tps = partitionsOf(topic, args.partitions);
        awaitStable(args, tps);
        Map<Integer, List<String>> readCommitted = valuesByPartition(readAll(args, List.of(topic), "read_committed"));
        Map<Integer, List<String>> readUncommitted = valuesByPartition(readAll(args, List.of(topic), "read_uncommitted"));
        report.fact("committed_values", count(ledger.committed));
        report.fact("read_committed", count(readCommitted));
        report.fact("all_values", count(ledger.written));
        report.fact("read_uncommitted", count(readUncommitted));
        report.expectEqual(ledger.committed, readCommitted, "read_committed values per partition, in order");
        report.expectEqual(ledger.written, readUncommitted, "read_uncommitted values per partition, in order");

        Map<TopicPartition, Long> logEnd = endOffsets(args, tps, "read_uncommitted");
        for (TopicPartition tp : tps) {
            int p = tp.partition();
            long expected = ledger.written.getOrDefault(p, List.of()).size() + ledger.markers.getOrDefault(p, 0);
            report.expectEqual(expected, logEnd.get(tp), "log end of " + tp + " (records + one marker per transaction)");
        }
    }

    // ---------------------------------------------------------------- eos

    static void eos(Args args, Report report) throws Exception {
        String input = args.prefix + "-in";
        String output = args.prefix + "-out";
        String group = args.prefix + "-group";
        createTopics(args, List.of(input, output));
        seedInputs(args, input, "in", args.records);

        long startedAt = System.nanoTime();
        EosRun run = transform(args, input, output, group);
        System.out.printf("transform: %d ms%n", (System.nanoTime() - startedAt) / 1_000_000);
        report.fact("transactions_committed", run.committedTxns);
        report.fact("transactions_aborted", run.abortedTxns);
        report.fact("inputs_committed", run.inputsCommitted);
        report.expectEqual(args.records, run.inputsCommitted, "inputs processed in committed transactions");
        report.expect(run.abortedTxns > 0, "at least one transaction aborted (to check its offsets are not kept)");

        awaitStable(args, partitionsOf(output, args.partitions));
        List<String> outCommitted = values(readAll(args, List.of(output), "read_committed"));
        List<String> outAll = values(readAll(args, List.of(output), "read_uncommitted"));
        report.fact("outputs_read_committed", outCommitted.size());
        report.fact("outputs_read_uncommitted", outAll.size());
        Set<String> expected = new HashSet<>();
        for (int i = 0; i < args.records; i++) {
            expected.add("out-in-" + i);
        }
        report.expectEqual(args.records, outCommitted.size(), "outputs read_committed");
        report.expectEqual(expected, new HashSet<>(outCommitted), "distinct outputs read_committed");
        report.expectEqual((long) args.records + run.outputsAborted, (long) outAll.size(),
                "outputs read_uncommitted (committed + aborted)");

        checkGroupOffsets(args, input, group, report);
        long resumeAt = System.nanoTime();
        checkGroupResumes(args, input, group, report);
        System.out.printf("resume: %d ms%n", (System.nanoTime() - resumeAt) / 1_000_000);
    }

    record EosRun(int committedTxns, int abortedTxns, int inputsCommitted, long outputsAborted) {}

    /** The consume-transform-produce loop; every third transaction is aborted and redone. */
    static EosRun transform(Args args, String input, String output, String group) {
        Properties cc = consumerConfig(args, "read_committed");
        cc.put("group.id", group);
        cc.put("max.poll.records", Integer.toString(EOS_POLL_RECORDS_MAX));
        long startedAt = System.nanoTime();
        int committedTxns = 0;
        int abortedTxns = 0;
        int inputsCommitted = 0;
        long outputsAborted = 0;
        long deadline = System.currentTimeMillis() + EOS_MS_MAX;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cc);
             KafkaProducer<String, String> producer = new KafkaProducer<>(producerConfig(args, args.prefix + "-eos"))) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            while (inputsCommitted < args.records && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> batch = consumer.poll(Duration.ofMillis(500));
                if (batch.isEmpty()) {
                    continue;
                }
                if (committedTxns + abortedTxns == 0) {
                    System.out.printf("first records polled after %d ms (group join)%n",
                            (System.nanoTime() - startedAt) / 1_000_000);
                }
                boolean abort = (committedTxns + abortedTxns) % 3 == 1;
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                Map<TopicPartition, Long> first = new HashMap<>();
                for (ConsumerRecord<String, String> r : batch) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    producer.send(new ProducerRecord<>(output, r.partition(), r.key(), "out-" + r.value()));
                    first.putIfAbsent(tp, r.offset());
                    next.put(tp, new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(next, consumer.groupMetadata());
                if (abort) {
                    producer.flush();
                    producer.abortTransaction();
                    first.forEach(consumer::seek);
                    abortedTxns++;
                    outputsAborted += batch.count();
                } else {
                    producer.commitTransaction();
                    committedTxns++;
                    inputsCommitted += batch.count();
                }
            }
        }
        return new EosRun(committedTxns, abortedTxns, inputsCommitted, outputsAborted);
    }

    static void checkGroupOffsets(Args args, String input, String group, Report report) throws Exception {
        List<TopicPartition> tps = partitionsOf(input, args.partitions);
        Map<TopicPartition, Long> ends = endOffsets(args, tps, "read_uncommitted");
        Map<TopicPartition, OffsetAndMetadata> offsets;
        try (Admin admin = Admin.create(adminConfig(args))) {
            // Stable offsets: the last transaction's, not older ones while its markers are pending
            // (the broker answers UNSTABLE_OFFSET_COMMIT until then and the client retries).
            ListConsumerGroupOffsetsOptions stable = new ListConsumerGroupOffsetsOptions().requireStable(true);
            offsets = admin.listConsumerGroupOffsets(group, stable).partitionsToOffsetAndMetadata()
                    .get(30, TimeUnit.SECONDS);
        }
        Map<TopicPartition, Long> committed = new HashMap<>();
        offsets.forEach((tp, om) -> committed.put(tp, om == null ? -1L : om.offset()));
        report.fact("group_offsets", new TreeMap<>(committed.entrySet().stream()
                .collect(Collectors.toMap(e -> e.getKey().partition(), Map.Entry::getValue))));
        report.expectEqual(ends, committed, "the group's committed offsets are the input ends");
    }

    /** More inputs; a new member of the group reads exactly those. */
    static void checkGroupResumes(Args args, String input, String group, Report report) {
        int more = args.partitions * 5;
        seedInputs(args, input, "more", more);
        Properties cc = consumerConfig(args, "read_committed");
        cc.put("group.id", group);
        List<String> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + READ_MS_MAX;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cc)) {
            consumer.subscribe(List.of(input));
            while (got.size() < more && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(r.value());
                }
            }
            // Anything more arriving would be an input read again.
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(1000))) {
                got.add(r.value());
            }
        }
        Set<String> expected = new HashSet<>();
        for (int i = 0; i < more; i++) {
            expected.add("more-" + i);
        }
        report.fact("resumed_reads", got.size());
        report.expectEqual(more, got.size(), "records a resumed member reads");
        report.expectEqual(expected, new HashSet<>(got), "a resumed member reads only the new inputs");
    }

    static void seedInputs(Args args, String topic, String tag, int count) {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerConfig(args, null))) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, i % args.partitions, "k" + i, tag + "-" + i));
            }
            producer.flush();
        }
    }

    // ---------------------------------------------------------------- helpers

    static Properties commonConfig(Args args) {
        Properties c = new Properties();
        c.put("bootstrap.servers", args.bootstrap);
        c.put("request.timeout.ms", "20000");
        c.put("default.api.timeout.ms", "30000");
        return c;
    }

    static Properties adminConfig(Args args) {
        return commonConfig(args);
    }

    /** Idempotent (the default since Kafka 3.0, asked for explicitly), acks=all, lz4. */
    static Properties producerConfig(Args args, String transactionalId) {
        Properties c = commonConfig(args);
        c.put("key.serializer", StringSerializer.class.getName());
        c.put("value.serializer", StringSerializer.class.getName());
        c.put("enable.idempotence", "true");
        c.put("acks", "all");
        c.put("linger.ms", "5");
        c.put("compression.type", "lz4");
        c.put("max.block.ms", "60000");
        c.put("delivery.timeout.ms", "60000");
        if (transactionalId != null) {
            c.put("transactional.id", transactionalId);
            c.put("transaction.timeout.ms", "60000");
        }
        return c;
    }

    static Properties consumerConfig(Args args, String isolation) {
        Properties c = commonConfig(args);
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        c.put("isolation.level", isolation);
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        return c;
    }

    /** Creates the topics and waits until every partition has a leader. */
    static void createTopics(Args args, List<String> names) throws Exception {
        Map<String, String> configs = args.replication >= 3 ? Map.of("min.insync.replicas", "2") : Map.of();
        List<NewTopic> topics = names.stream()
                .map(n -> new NewTopic(n, args.partitions, args.replication).configs(configs))
                .toList();
        try (Admin admin = Admin.create(adminConfig(args))) {
            admin.createTopics(topics).all().get(30, TimeUnit.SECONDS);
            long deadline = System.currentTimeMillis() + TOPIC_READY_MS_MAX;
            while (!allLed(admin, names, args.partitions)) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("topics " + names + " have no leader for every partition");
                }
                Thread.sleep(100);
            }
        }
    }

    static boolean allLed(Admin admin, List<String> names, int partitions) {
        try {
            Map<String, TopicDescription> described = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);
            for (TopicDescription d : described.values()) {
                if (d.partitions().size() != partitions) {
                    return false;
                }
                for (TopicPartitionInfo p : d.partitions()) {
                    if (p.leader() == null || p.leader().isEmpty()) {
                        return false;
                    }
                }
            }
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    static List<TopicPartition> partitionsOf(String topic, int partitions) {
        List<TopicPartition> tps = new ArrayList<>();
        for (int p = 0; p < partitions; p++) {
            tps.add(new TopicPartition(topic, p));
        }
        return tps;
    }

    /**
     * Waits until no transaction is open on `tps`: each last stable offset equals its log end.
     * A commit returns before its markers are written (they are written after EndTxn is
     * answered), so reads right after it could stop short of the last transaction.
     */
    static void awaitStable(Args args, Collection<TopicPartition> tps) throws InterruptedException {
        long deadline = System.currentTimeMillis() + READ_MS_MAX;
        while (true) {
            Map<TopicPartition, Long> logEnd = endOffsets(args, tps, "read_uncommitted");
            Map<TopicPartition, Long> stable = endOffsets(args, tps, "read_committed");
            if (logEnd.equals(stable)) {
                return;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("transactions still open: log end " + logEnd + ", stable " + stable);
            }
            Thread.sleep(50);
        }
    }

    static Map<TopicPartition, Long> endOffsets(Args args, Collection<TopicPartition> tps, String isolation) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerConfig(args, isolation))) {
            return new HashMap<>(c.endOffsets(tps));
        }
    }

    /**
     * Every record of the topics' partitions from the start, read with `isolation` until each
     * position reaches that isolation's end offset (log end, or last stable offset), taken after
     * the writes finished: so a record too many would be read as surely as one too few.
     */
    static List<ConsumerRecord<String, String>> readAll(Args args, List<String> topics, String isolation) {
        List<TopicPartition> tps = new ArrayList<>();
        for (String t : topics) {
            tps.addAll(partitionsOf(t, args.partitions));
        }
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + READ_MS_MAX;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerConfig(args, isolation))) {
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            while (!reached(c, ends)) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException(isolation + " read of " + topics + " stopped short of " + ends
                            + " after " + got.size() + " records");
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    got.add(r);
                }
            }
        }
        return got;
    }

    static boolean reached(KafkaConsumer<String, String> c, Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            if (c.position(e.getKey()) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    static Map<Integer, List<String>> valuesByPartition(List<ConsumerRecord<String, String>> records) {
        Map<Integer, List<String>> out = new TreeMap<>();
        for (ConsumerRecord<String, String> r : records) {
            out.computeIfAbsent(r.partition(), p -> new ArrayList<>()).add(r.value());
        }
        return out;
    }

    static List<String> values(List<ConsumerRecord<String, String>> records) {
        return records.stream().map(ConsumerRecord::value).toList();
    }

    static int count(Map<Integer, List<String>> byPartition) {
        return byPartition.values().stream().mapToInt(List::size).sum();
    }

    /** The fencing exception in `e`'s cause chain, else its own class ("none" for no exception). */
    static String fencingCause(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) {
                return t.getClass().getSimpleName();
            }
        }
        return e == null ? "none" : e.getClass().getSimpleName();
    }

    static String causeChain(Throwable e) {
        List<String> parts = new ArrayList<>();
        for (Throwable t = e; t != null && parts.size() < 5; t = t.getCause()) {
            parts.add(t.getClass().getSimpleName() + "(" + t.getMessage() + ")");
        }
        return String.join(" <- ", parts);
    }

    static String abbreviate(Object o) {
        String s = String.valueOf(o);
        return s.length() <= 400 ? s : s.substring(0, 400) + "...(" + s.length() + " chars)";
    }
}
