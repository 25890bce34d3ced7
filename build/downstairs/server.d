build/downstairs/server.o: downstairs/server.c downstairs/server.h \
 downstairs/region.h downstairs/../common/proto.h \
 downstairs/../common/geom.h downstairs/../common/proto.h \
 downstairs/../common/log.h downstairs/server_int.h \
 downstairs/server_sched.h
downstairs/server.h:
downstairs/region.h:
downstairs/../common/proto.h:
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/server_int.h:
downstairs/server_sched.h:
