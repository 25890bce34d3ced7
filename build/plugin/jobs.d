build/plugin/jobs.o: plugin/jobs.c plugin/../common/log.h \
 plugin/upstairs_int.h plugin/../common/proto.h plugin/client.h \
 plugin/upstairs.h plugin/../common/crypt.h plugin/../common/parse.h
plugin/../common/log.h:
plugin/upstairs_int.h:
plugin/../common/proto.h:
plugin/client.h:
plugin/upstairs.h:
plugin/../common/crypt.h:
plugin/../common/parse.h:
