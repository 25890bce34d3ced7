build/common/geom.o: common/geom.c common/geom.h common/proto.h
common/geom.h:
common/proto.h:
