build/common/proto.o: common/proto.c common/proto.h common/geom.h
common/proto.h:
common/geom.h:
