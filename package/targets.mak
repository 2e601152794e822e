BIN_TARGETS := \
qmail-remote \
qmail-newsmtproutes \
qmail-newtlspolicy \
qmail-remote-probe \
qmail-remote-mtasts \
qmail-remote-tlsrpt

LIBEXEC_TARGETS := \
qmail-remote-routes \
qmail-remote-resolve \
qmail-remote-connect \
qmail-remote-io \
qmail-remote-tlsio
