build/downstairs/server_hello.o: downstairs/server_hello.c \
 downstairs/../common/geom.h downstairs/../common/proto.h \
 downstairs/../common/log.h downstairs/server_int.h \
 downstairs/../common/proto.h downstairs/region.h downstairs/server.h \
 downstairs/server_sched.h
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/server_int.h:
downstairs/../common/proto.h:
downstairs/region.h:
downstairs/server.h:
downstairs/server_sched.h:
