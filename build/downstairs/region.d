build/downstairs/region.o: downstairs/region.c \
 downstairs/../common/crypt.h downstairs/../common/geom.h \
 downstairs/../common/proto.h downstairs/../common/log.h \
 downstairs/extent.h downstairs/../common/proto.h downstairs/region.h
downstairs/../common/crypt.h:
downstairs/../common/geom.h:
downstairs/../common/proto.h:
downstairs/../common/log.h:
downstairs/extent.h:
downstairs/../common/proto.h:
downstairs/region.h:
