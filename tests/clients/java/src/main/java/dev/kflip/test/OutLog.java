package dev.kflip.test;

import org.slf4j.ILoggerFactory;
import org.slf4j.IMarkerFactory;
import org.slf4j.Marker;
import org.slf4j.event.Level;
import org.slf4j.helpers.BasicMarkerFactory;
import org.slf4j.helpers.LegacyAbstractLogger;
import org.slf4j.helpers.MessageFormatter;
import org.slf4j.helpers.NOPMDCAdapter;
import org.slf4j.spi.MDCAdapter;
import org.slf4j.spi.SLF4JServiceProvider;

/**
 * A minimal SLF4J 2 binding for the Kafka client's own log lines, so that
 * they reach the event file like failover_client.py's `log` lines: records
 * at WARN and up (or down to the level named by {@code -Dkflip.log=info},
 * debug or trace) go to stderr and, once {@link FailoverClient} has opened
 * its event file, there too as {@code log <level> <logger>: <message>}.
 *
 * <p>Tests rely on those WARN lines, e.g. to notice a client that loops on
 * metadata errors. FailoverClient selects this binding through the
 * {@code slf4j.provider} system property, so no service file is needed.
 */
public final class OutLog implements SLF4JServiceProvider {
    private static final Level THRESHOLD =
            Level.valueOf(System.getProperty("kflip.log", "warn").toUpperCase());

    private final ILoggerFactory loggers = Out::new;
    private final IMarkerFactory markers = new BasicMarkerFactory();
    private final MDCAdapter mdc = new NOPMDCAdapter();

    @Override
    public ILoggerFactory getLoggerFactory() {
        return loggers;
    }

    @Override
    public IMarkerFactory getMarkerFactory() {
        return markers;
    }

    @Override
    public MDCAdapter getMDCAdapter() {
        return mdc;
    }

    @Override
    public String getRequestedApiVersion() {
        return "2.0.99";
    }

    @Override
    public void initialize() {
    }

    /** One named logger; the level check is all the state it needs. */
    private static final class Out extends LegacyAbstractLogger {
        Out(String name) {
            this.name = name;
        }

        private static boolean on(Level level) {
            return level.toInt() >= THRESHOLD.toInt();
        }

        @Override
        public boolean isTraceEnabled() {
            return on(Level.TRACE);
        }

        @Override
        public boolean isDebugEnabled() {
            return on(Level.DEBUG);
        }

        @Override
        public boolean isInfoEnabled() {
            return on(Level.INFO);
        }

        @Override
        public boolean isWarnEnabled() {
            return on(Level.WARN);
        }

        @Override
        public boolean isErrorEnabled() {
            return on(Level.ERROR);
        }

        @Override
        protected String getFullyQualifiedCallerName() {
            return null;
        }

        @Override
        protected void handleNormalizedLoggingCall(Level level, Marker marker, String pattern,
                                                   Object[] args, Throwable thrown) {
            String msg = MessageFormatter.basicArrayFormat(pattern, args);
            if (thrown != null) {
                msg += ": " + FailoverClient.describe(thrown);
            }
            FailoverClient.clientLog(level.name().toLowerCase(), name, msg);
        }
    }
}
